"""The language model layer (imports only settings/errors/files below it).

registry.py: named models (PACKAGED, built, a path) resolved offline to a GGUF file (resolve_model);
chat_model.py: ChatModel, a GGUF through llama-cpp-python (stream_chat, chat, token counts);
kv_blocks.py: reusable KV-cache blocks of retrieved documents (faster time to first token);
context_limit.py: how large a context a model may get; prompt_lookup.py: prompt-lookup decoding
(drafts copied from the prompt) for answers over documents.
"""
