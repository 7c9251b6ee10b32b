"""The job's passes over the corpus: 1 counts (and the record cache), 2 k-means, 3 cluster histograms and the plan, 4 resample."""
