"""``python -m text_mpt.pretrain --config configs/pretrain/tiny_t5.yaml [key=value ...]`` (= ``text-mpt pretrain``)."""

from .recipe import main

raise SystemExit(main())
