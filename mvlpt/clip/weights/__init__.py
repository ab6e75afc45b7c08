"""Shipped backbone weights: a data folder, no code.

``tiny-clip/`` holds a miniature CLIP pretrained by the pretraining wing :mod:`mvlpt.clip.pretrain` (see its
README): ``tiny-clip.json`` (open_clip model config), ``open_clip_model.safetensors`` (fp16 weights) and
``metadata.json`` (data, steps, commit, zero-shot accuracies). Build it with the CLIP factory,
``mvlpt.clip.backbone.create_backbone("tiny-clip")``, which finds this folder by its path
(:func:`mvlpt.clip.backbone.weights_dir`); the file stays so that the folder ships as package data.
"""
