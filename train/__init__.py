"""Training data and training; imports assistant's engine packages, never assistant.cli.

Data: synth.py (Q&A from a docs corpus with a local teacher; teacher.py), data_import.py (existing
Q&A from CSV/JSONL), data_filter.py (quality filters), synth_format.py (trl datasets + card).
Training: recipe.py (YAML recipes of merge / dpo / sft stages), run.py (run_recipe: stages in
order, skipped or resumed), sft.py, dpo.py, merge.py (the stages), common.py (what sft and dpo
share), base.py (a model reference -> HF folder), attention.py, tiny.py (tiny models for tests).
"""
