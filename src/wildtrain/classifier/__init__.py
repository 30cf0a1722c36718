"""The species classifier: torchvision backbones trained with Lightning on the ROI crops (ImageFolder)."""
