"""Text path of LatentLM: an offline byte-level BPE tokenizer and a text LM on the shared trunk."""
