"""Source readers: each turns a :class:`~datasets_vl.spec.DatasetSpec` into a transform-less
:class:`~datasets_vl.dataset.VLTask`."""
