"""Filters: length bounds, exact and near-duplicate questions (real embedder), grounding."""
from __future__ import annotations

from train.data_filter import (
    FilterConfig,
    filter_pairs,
    filter_texts,
    grounding,
    near_duplicate_of,
    summary_table,
    token_f1,
)

CHUNK = ("Nitro listens on port 3928 by default. Start the server with the nitro binary, then load a "
         "model by posting llama_model_path and ctx_len to /inferences/llamacpp/loadmodel.")


def test_grounding_and_f1_measure_overlap():
    assert grounding("Nitro listens on port 3928 by default.", CHUNK) == 1.0
    assert grounding("Nitro was written in Rust by a team in Paris.", CHUNK) < 0.5
    assert grounding("Yes, it is.", CHUNK) == 0.0  # no content words: nothing grounded
    assert token_f1("Load a model with loadmodel", "POST to loadmodel to load a model") > 0.5
    assert token_f1("port 3928", "Rust in Paris") == 0.0


def test_dedup_exact_and_near_duplicates_with_real_embedder():
    pairs = [
        {"question": "How do I install Nitro?", "answer": "Run the install script from the docs."},
        {"question": "how do I install nitro", "answer": "Use the install script."},  # exact (normalized)
        {"question": "How can I install Nitro?", "answer": "With the install script."},  # near duplicate
        {"question": "What port does Nitro listen on by default?", "answer": "Port 3928."},
        {"question": "Which port does Nitro use by default?", "answer": "It uses 3928."},  # near duplicate
        {"question": "Why does Nitro warm up the model?", "answer": "To cut first-request delay."},
    ]
    kept, dropped = filter_pairs(pairs)
    assert [p["question"] for p in kept] == [
        "How do I install Nitro?", "What port does Nitro listen on by default?",
        "Why does Nitro warm up the model?"]
    assert dropped == {"exact_duplicate": 1, "near_duplicate": 2}
    # a stricter threshold keeps the paraphrases apart
    kept, dropped = filter_pairs([dict(p) for p in pairs], config=FilterConfig(near_duplicate=0.999))
    assert len(kept) == 5 and dropped == {"exact_duplicate": 1}


def test_length_and_grounding_drops_are_counted_by_reason():
    pairs = [
        {"chunk_id": "c1", "question": "Port?", "answer": "3928"},  # question too short
        {"chunk_id": "c1", "question": "What port does Nitro use?", "answer": "x"},  # answer too short
        {"chunk_id": "c1", "question": "Who wrote Nitro and in what language?",
         "answer": "It was written in Rust by engineers in Paris."},  # not in the chunk
        {"chunk_id": "c1", "question": "How do I load a model into Nitro?",
         "answer": "Post llama_model_path and ctx_len to /inferences/llamacpp/loadmodel."},
    ]
    kept, dropped = filter_pairs(pairs, sources={"c1": CHUNK})
    assert [p["question"] for p in kept] == ["How do I load a model into Nitro?"]
    assert kept[0]["grounding"] >= 0.5
    assert dropped == {"question_length": 1, "answer_length": 1, "low_grounding": 1}


def test_near_duplicate_of_is_greedy_first_wins():
    import numpy as np

    v = np.array([[1, 0], [0.99, 0.141], [0, 1]], dtype=np.float32)
    assert near_duplicate_of(v, 0.95) == [None, 0, None]


def test_rephrasings_filtered_and_table_renders():
    good = "By default Nitro listens on port 3928; start the nitro binary and post llama_model_path to loadmodel."
    kept, dropped = filter_texts([good, good, "short", "Bananas are yellow fruit that grow in warm tropical "
                                  "places and are rich in potassium and other nutrients."], CHUNK)
    assert kept == [good]
    assert dropped == {"rephrase_duplicate": 1, "rephrase_length": 1, "rephrase_grounding": 1}
    from rich.console import Console

    console = Console(record=True, width=100)
    console.print(summary_table("t", 4, 1, dropped))
    text = console.export_text()
    assert "kept" in text and "rephrase_grounding" in text and "25.0%" in text
