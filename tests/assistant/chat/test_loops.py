"""Loop detection: the detector on token streams, and on a real SmolLM2 answer that loops."""
from __future__ import annotations

from assistant.chat.loops import LoopDetector, repeated_run


def _feed(detector: LoopDetector, pieces: list[str]) -> int | None:
    for i, p in enumerate(pieces):
        if detector.add(p):
            return i
    return None


def test_detector_stops_at_third_occurrence_and_keeps_one_copy():
    sentence = [" The", " server", " runs", " on", " port", " 3928", ".", " It", " is", " fast", "."]
    d = LoopDetector(n=8, repeats=3)
    stop = _feed(d, ["Answer:"] + sentence * 5)
    assert stop is not None and stop < 1 + 3 * len(sentence)  # ended during the third copy
    assert d.text() == "Answer:" + "".join(sentence)  # cut before the first repetition


def test_detector_leaves_a_normal_answer_alone():
    words = ("Run onboard index ./docs to build the index , then onboard chat --index docs to ask . "
             "The index lives in ONBOARD_HOME and updates only changed files .").split()
    d = LoopDetector(n=8, repeats=3)
    assert _feed(d, [" " + w for w in words]) is None
    assert d.text() == "".join(" " + w for w in words)


def test_two_copies_are_not_a_loop_and_off_means_off():
    run = [f" t{i}" for i in range(8)]
    assert _feed(LoopDetector(8, 3), run + [" x"] + run) is None
    assert _feed(LoopDetector(0, 3), run * 6) is None  # loop_ngram = 0 turns the detector off


def test_repeated_run_counts_any_8_token_run():
    assert repeated_run(list(range(8)) * 3) == tuple(range(8))
    assert repeated_run(list(range(8)) * 2 + [99]) is None
    assert repeated_run([1] * 10) == (1,) * 8  # overlapping runs count


def test_real_answer_that_loops_is_cut(smollm, nitro_settings):
    """SmolLM2-135M loops on this rag question without penalties (bench/loops.py: 31 of 40 do);
    the detector alone ends it, and the kept answer holds no 8-token run three times."""
    from assistant.chat.session import Session

    settings = nitro_settings.replace(repeat_penalty=1.0, max_tokens=256)
    session = Session(settings, model_name="smollm2-135m", index="nitro", model=smollm, progress=False)
    question = "In a Nitro load-model request body, which key holds the file path of the GGUF model to load?"
    result = session.job(question, mode="rag", temperature=0.0).run()
    assert result.looped
    assert result.answer
    tokens = smollm.llm.tokenize(result.answer.encode(), add_bos=False, special=False)
    assert repeated_run(tokens, 8, 3) is None
    assert smollm.last.completion_tokens < 256  # the generation itself stopped early
