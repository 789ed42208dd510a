"""Answering a turn: the engine (the one owner of llama.cpp), chat templates, sampling, stop strings and images.

Only `engine` and `native` touch llama_cpp, and only lazily: the rest runs on Pyto, where llama.cpp does not.
"""
