"""Model files: the catalog, verified downloads, the store on disk and the checks a file passes before llama.cpp."""
