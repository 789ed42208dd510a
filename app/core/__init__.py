"""The Qt-free, cv2-free heart of LlavaCam (Python 3.10-compatible; runs on Pyto too).

Nothing here imports PySide6, cv2 or anything above `app.core`; llama_cpp is imported lazily so the
core can be imported where llama.cpp cannot run.
"""
