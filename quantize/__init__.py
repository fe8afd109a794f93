"""From a trained checkpoint to something people run; imports assistant's engine packages, never
assistant.cli.

convert.py: HF -> GGUF f16 -> Q8_0 / Q4_K_M..., verified (verify.py) and registered with a card
(card.py); export.py: folders for Ollama and Jan; bundle.py: one-file air-gapped bundles;
serve.py: the OpenAI-compatible server (`onboard serve`), answering through chat.session.Session.
"""
