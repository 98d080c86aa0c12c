"""The finetuning transforms: the paper's training augmentation (or flips only) and the evaluation resize."""

from __future__ import annotations

from PIL import Image
from timm.data import create_transform
from torchvision import transforms as T

from ..config import Training
from ..data.images import IMAGENET_MEAN, IMAGENET_STD


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, for new Pillow: RandAugment's ``inc1`` posterize can ask for 0 bits, which
    Pillow < 11 turned into a black image and newer Pillow rejects; keep the old result."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    return Image.new(img.mode, img.size) if bits_to_keep <= 0 else ImageOps.posterize(img, bits_to_keep)


PAPER_AUGMENTATION = (0.08, "rand-m9-mstd0.5-inc1", 0.25)  # the release's min_crop_scale, RandAugment, erasing


def train_transform(size: int, recipe: Training | None = None):
    """The training transform of ``recipe`` (its ``augment``, ``min_crop_scale``, ``rand_augment`` and
    ``erase_prob``; None = the paper's recipe). ``augment: paper``: RandomResizedCrop(min_crop_scale-1,
    bicubic) + flip + RandAugment + RandomErasing (pixel), the released code's MAE finetuning recipe;
    ``rand_augment: ""`` means no photometric augmentation at all (timm would otherwise put its colour
    jitter in its place). ``augment: flip``: the evaluation resize and a horizontal flip, nothing else
    (the other keys are unused): the crops stay aligned, which a small ViT on little data needs."""
    augment, min_crop_scale, rand_augment, erase_prob = ("paper", *PAPER_AUGMENTATION) if recipe is None else \
        (recipe.augment, recipe.min_crop_scale, recipe.rand_augment, recipe.erase_prob)
    if augment == "flip":
        return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(),
                          T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize
    return create_transform(size, is_training=True, scale=(min_crop_scale, 1.0), ratio=(3 / 4, 4 / 3), hflip=0.5,
                            auto_augment=rand_augment or None, color_jitter=None, interpolation="bicubic", re_prob=erase_prob,
                            re_mode="pixel", re_count=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def eval_transform(size: int, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
    """Resize to size x size (no centre crop), as the released code tests."""
    return T.Compose([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC), T.ToTensor(),
                      T.Normalize(mean, std)])


