"""Training recipes: one module per method, each saying how to build the head, compute the
training loss on a batch of cached features, and turn features into query embeddings."""
