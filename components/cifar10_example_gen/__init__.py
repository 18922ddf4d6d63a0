"""ExampleGen for the official CIFAR-10 binary batches."""
from components.cifar10_example_gen.component import Cifar10ExampleGen

__all__ = ["Cifar10ExampleGen"]
