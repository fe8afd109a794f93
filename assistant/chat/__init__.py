"""Answering a question (imports rag, llm and below).

modes.py: MODES and check_mode, retrieval_query (the one hybrid query), AnswerJob (one question
through one mode); prompts.py: system prompts and retrieved documents rendered as fenced data;
session.py: Session (a model plus its retrievers), shared by `onboard ask`, the TUI and
`onboard serve`; condense.py: follow-ups made standalone before retrieval; history.py: saved
conversations; feedback.py: ratings and corrections kept for the next DPO round; loops.py:
stops an answer that repeats itself.
"""
