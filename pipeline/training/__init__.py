"""The finetuning library the AU and FER stages share: the epoch loop, transforms, crops, backbone loading."""
