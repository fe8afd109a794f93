"""train/mcq_rows.py: multiple-choice reading rows in the prompt `onboard eval` scores."""
import random

from assistant.eval.scoring import SYSTEM_MCQ_RAG
from assistant.rag.hits import Hit
from train.mcq_rows import (Vocabulary, agrees, answer_cloze_items, mcq_rows, near_misses, shorten, span_kind,
                             spans)

PAGE = Hit(path="docs/server.md", heading="Server", chunk_id="s1", position=0,
           text="Start the server with `nitro --port 3928`.\nThe default `ctx_len` is 2048 and "
                "`cont_batching` is false unless you set it.\nThe health check is http://localhost:3928/healthz.")
PAGE2 = Hit(path="docs/server.md", heading="Load", chunk_id="s2", position=1,
            text="Load a model with `llama_model_path` set; `ngl` defaults to 100 and `n_parallel` to 1.\n"
                 "Set `embedding` to true to serve embeddings from the same model.")
OTHER = Hit(path="docs/faq.md", heading="FAQ", chunk_id="f1", position=0,
            text="Replace api.openai.com with localhost:3928 in your client settings, port 3928.\n"
                 "Nitro listens on 127.0.0.1 by default and needs no API key for local calls.")
POOL = [PAGE, PAGE2, OTHER]
CHUNKS = {h.chunk_id: h for h in POOL}


def test_spans_keep_values_not_words_or_list_numbers():
    found = spans("1. Run `nitro` on port 3928 with ctx_len 2048, a warm-up step and true.")
    assert "`nitro`" in found and "3928" in found and "ctx_len" in found and "true" in found
    assert "1" not in found and "warm-up" not in found
    assert spans("Set a flag (e.g. `--port`), i.e. one value, etc.") == ["`--port`"]
    assert [span_kind(s) for s in ("`x`", "3928", "true", "--port", "http://a.b", "ctx_len")] == \
        ["code", "num", "bool", "flag", "url", "ident"]


def test_near_misses_swap_one_value_for_a_same_kind_lookalike():
    vocab = Vocabulary(POOL)
    answer = "The default `ctx_len` is 2048."
    variants = near_misses(answer, PAGE.path, vocab, random.Random(0), 2)
    assert variants and all(v != answer for v in variants)
    for v in variants:  # exactly one value differs, and it became another value of its kind
        diff = [(a, b) for a, b in zip(spans(answer), spans(v)) if a != b]
        assert len(diff) == 1 and span_kind(diff[0][0]) == span_kind(diff[0][1])
    assert near_misses("A plain sentence with no values at all.", PAGE.path, vocab, random.Random(0), 2) == []


def test_shorten_cuts_at_a_sentence_end():
    text = "First sentence here. " + "Second one is long " * 30 + "end."
    assert shorten(text, words=10) == "First sentence here."


def test_rows_are_eval_prompts_with_the_right_letter_and_the_answering_chunk():
    pairs = [{"question": "What is the default ctx_len?", "answer": "The default `ctx_len` is 2048.", "chunk_id": "s1"},
             {"question": "What does ngl default to?", "answer": "`ngl` defaults to 100.", "chunk_id": "s2"},
             {"question": "What replaces api.openai.com?", "answer": "Use localhost:3928 instead.", "chunk_id": "f1"},
             {"question": "An orphan question?", "answer": "Has no chunk.", "chunk_id": "missing"}]
    rows, counts = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=1, per_row=1)
    assert counts["reading_from_pairs"] == 3 and counts["reading_cloze"] >= 2 and counts["reading"] == len(rows)
    for row in rows:
        system, user = row["prompt"][0]["content"], row["prompt"][1]["content"]
        letter = row["completion"][0]["content"]
        assert system == SYSTEM_MCQ_RAG and letter in "ABCD"
        options = [ln[3:] for ln in user.split("\n") if ln[:3] in ("A. ", "B. ", "C. ", "D. ")]
        assert len(options) == 4 and len(set(o.lower() for o in options)) == 4
        assert user.count("<document ") == 2
        if "What is the default ctx_len?" in user and "____" not in user:
            assert options["ABCD".index(letter)] == "The default `ctx_len` is 2048."
            assert "docs/server.md" in user.split("Question:")[0]
        if "fills the blank" in user:  # the blanked value is the right option, and it is in the docs
            assert "____" in user and options["ABCD".index(letter)] in user.split("Question:")[0]
    again, _ = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=1, per_row=1)
    assert again == rows  # deterministic for a seed


def test_grouped_rows_ask_every_question_of_a_chunk_once_over_one_set_of_documents():
    pairs = [{"question": f"Question {i} about the server?", "answer": a, "chunk_id": "s1"}
             for i, a in enumerate(["The default `ctx_len` is 2048.", "Use `nitro --port 3928`.",
                                    "`cont_batching` is false.", "It is http://localhost:3928/healthz."])]
    single, counts = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=3, per_row=1)
    grouped, grouped_counts = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=3, per_row=3)
    assert grouped_counts["reading_questions"] == counts["reading_questions"] == len(single)
    assert len(grouped) < len(single)
    asked = []
    for row in grouped:
        msgs = row.get("messages") or row["prompt"] + row["completion"]
        assert msgs[0] == {"role": "system", "content": SYSTEM_MCQ_RAG}
        users = [m["content"] for m in msgs if m["role"] == "user"]
        letters = [m["content"] for m in msgs if m["role"] == "assistant"]
        assert 1 <= len(users) == len(letters) <= 3 and all(x in "ABCD" for x in letters)
        assert users[0].startswith("Documents:") and users[0].count("<document ") == 2
        assert all(u.startswith("Question: ") and "<document " not in u for u in users[1:])
        asked += [u.rsplit("Question: ", 1)[1].split("\n\nA. ")[0] for u in users]
    assert sorted(asked) == sorted(r["prompt"][1]["content"].rsplit("Question: ", 1)[1].split("\n\nA. ")[0]
                                   for r in single)


def test_a_turn_that_an_earlier_answer_of_its_row_gives_away_is_counted():
    pairs = [{"question": "What is the default ctx_len?", "answer": "The default `ctx_len` is 2048.", "chunk_id": "s1"},
             {"question": "How long is the context by default?", "answer": "2048 tokens (`ctx_len`).", "chunk_id": "s1"},
             {"question": "Is continuous batching on?", "answer": "No, `cont_batching` is false.", "chunk_id": "s1"}]
    one_chat = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=3, per_row=8, cloze_per_chunk=0)[1]
    apart = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=3, per_row=1, cloze_per_chunk=0)[1]
    # the two ctx_len answers agree (and each answer-cloze item blanks a value of its pair's answer)
    assert one_chat["reading_answer_given_away_in_row"] >= 1 and apart["reading_answer_given_away_in_row"] == 0


def test_cloze_per_chunk_sets_how_many_teacher_free_questions_a_chunk_gives():
    counts = {n: mcq_rows([], CHUNKS, POOL, n_docs=2, seed=1, cloze_per_chunk=n)[1]["reading_cloze"]
              for n in (0, 1, 6)}
    assert counts[0] == 0 and 0 < counts[1] <= len(POOL) and counts[6] > counts[1]


def test_another_answer_that_names_the_right_value_or_shares_its_words_is_not_a_wrong_option():
    right = "Download it from https://github.com/janhq/nitro/releases, the release page."
    assert agrees("The release page, https://github.com/janhq/nitro/releases, has the binary.", right)
    assert agrees("Download it from the release page.", right)  # half the words shared
    assert not agrees("The server listens on port 3928 by default.", right)
    pairs = [{"question": f"Where do I get Nitro ({i})?", "answer": a, "chunk_id": "s1"}
             for i, a in enumerate([right, "Get it from https://github.com/janhq/nitro/releases.",
                                    "Start it with `nitro --port 3928`.", "`cont_batching` is false."])]
    rows, counts = mcq_rows(pairs, CHUNKS, POOL, n_docs=2, seed=2, per_row=1)
    assert counts["reading_agreeing_options_dropped"] > 0
    for row in rows:
        user, letter = row["prompt"][1]["content"], row["completion"][0]["content"]
        options = [ln[3:] for ln in user.split("\n") if ln[:3] in ("A. ", "B. ", "C. ", "D. ")]
        wrong = [o for i, o in enumerate(options) if "ABCD"[i] != letter]
        if "(0)?" in user and "____" not in user:  # the other right answer is never offered as wrong
            assert "Get it from https://github.com/janhq/nitro/releases." not in wrong


def test_answer_cloze_blanks_a_value_the_answering_chunk_states_and_offers_same_kind_values():
    pairs = [{"question": "What is the default context length?", "answer": "The default `ctx_len` is 2048.",
              "chunk_id": "s1"},
             {"question": "How do I turn on embeddings?", "answer": "Set `embedding` to true.", "chunk_id": "s2"},
             {"question": "What is the port?", "answer": "It is 9999, a port no chunk states.", "chunk_id": "s1"}]
    items = answer_cloze_items(pairs, CHUNKS, Vocabulary(POOL), seed=0)
    assert items and all(h.chunk_id in ("s1", "s2") for h, _, _, _ in items)
    for oracle, block, letter, _ in items:
        options = [ln[3:] for ln in block.split("\n") if ln[:3] in ("A. ", "B. ", "C. ", "D. ")]
        right = options["ABCD".index(letter)]
        assert "____" in block and right in oracle.text and right not in block.split("\n\nA. ")[0]
        assert len({span_kind(o) for o in options}) == 1  # look-alikes of the blanked value's kind
    assert not any("9999" in block for _, block, _, _ in items)  # a value the docs do not state is never asked


def test_prose_rows_answer_in_the_rag_prompt_with_the_answering_chunks_citation():
    from assistant.chat.prompts import SYSTEM_RAG
    from train.mcq_rows import prose_rows

    pairs = [{"question": f"Question {i} about the port?", "answer": f"Answer {i}:  the port is 3928.", "chunk_id": cid}
             for i, cid in enumerate(["s1", "s1", "s2", "f1", "s1"])] + [{"question": "No chunk?", "answer": "x"}]
    rows, answers = prose_rows(pairs, CHUNKS, POOL, n_rows=2, n_docs=2, per_row=2, seed=0)
    chats = [r.get("messages") or r["prompt"] + r["completion"] for r in rows]
    assert len(rows) == 2 and answers == sum(m["role"] == "assistant" for c in chats for m in c) == 3
    for row in rows:
        chat = row.get("messages") or row["prompt"] + row["completion"]
        assert chat[0]["content"] == SYSTEM_RAG and chat[1]["content"].startswith("Documents:")
        docs = chat[1]["content"].split("<document source=")[1:]
        for turn in chat[2::2]:
            assert turn["role"] == "assistant" and "  " not in turn["content"]
            n = int(turn["content"].rsplit("[", 1)[1].rstrip("]"))
            # the cited document is the answering chunk of the question just asked
            asked = chat[chat.index(turn) - 1]["content"]
            pair = next(p for p in pairs if p["question"] in asked)
            assert CHUNKS[pair["chunk_id"]].text.split("\n")[0] in docs[n - 1]
    assert prose_rows(pairs, CHUNKS, POOL, n_rows=0)[0] == []

