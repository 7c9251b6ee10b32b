"""Reading the corpus in Beam: units of files, the read stages' bookkeeping, image corpora, the demo corpora."""
