"""``python -m mvlpt.clip.pretrain --config configs/pretrain/tiny_clip.yaml [key=value ...]`` (= ``mvlpt pretrain``)."""

from .recipe import main

raise SystemExit(main())
