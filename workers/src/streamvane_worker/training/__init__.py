"""Learning from the stream: training examples, the ranker's network, the online learner and
its offline replay."""
