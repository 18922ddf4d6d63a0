"""ExampleGen for a folder of images to classify in bulk (`--predict-dir`)."""
from components.image_folder_example_gen.component import ImageFolderExampleGen

__all__ = ["ImageFolderExampleGen"]
