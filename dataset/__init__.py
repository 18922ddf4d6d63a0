"""The CIFAR-10 data set on disk: download, verify and unpack the official binary archive."""
