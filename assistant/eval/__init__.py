"""Evaluation (imports chat, rag, llm and below; used by build and the CLI).

mcq.py: MCQItem and read_mcq, the one MCQ reader; scoring.py: LetterScorer (letter
log-probabilities), evaluate and summarize; run.py: run_eval and its resumable Checkpoint
(`onboard eval`, the build's evaluate stage); retrieval.py: hit@k and MRR of an index
(`onboard eval-retrieval`); report.py: results files, tables, charts and the report card;
freeform.py: free-form answers graded by a model (`onboard eval --method freeform`).
"""
