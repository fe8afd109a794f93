"""Docs retrieval (imports llm and below, never chat/tui/eval/cli).

Ingest: documents.py (Document, the read report), ingest.py (a folder or file -> Documents),
formats/ (one reader per docs format), chunking.py (heading-aware ~300-token chunks).
Index: embedders.py and onnx_embedder.py (MiniLM through PyTorch or ONNX Runtime), store.py (where
an index lives: Chroma collection + manifest), index.py (index_path builds/updates, DocIndex.search,
open_retriever), lexical.py (BM25 next to each collection; fused with the vectors),
hits.py (Hit, the Retriever protocol).
corpus.py: known reference corpora fetched at a pinned commit.
"""
