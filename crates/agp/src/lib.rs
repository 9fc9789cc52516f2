//! LLM reranking of backbone candidate lists: Base, LLM-Dir, LLM-CoT and AGP.
