"""xafm's core, in layers; nothing here imports the format wing, rendering or animation.

1. :mod:`~xafm.core.conventions`: dim names, the attrs and coordinate names xafm owns,
   name encoding, netCDF- and JSON-safe values.
2. :mod:`~xafm.core.provenance` and :mod:`~xafm.core.model`: where a stack came from,
   and what a stack is (model builds on provenance, never the reverse).
3. Helpers the formats, rendering and processing share: lazy arrays
   (:mod:`~xafm.core.lazy`), block iteration (:mod:`~xafm.core.blocks`), streaming
   percentiles (:mod:`~xafm.core.percentiles`, the automatic z-scale), preferred chunks
   (:mod:`~xafm.core.chunks`), atomic outputs (:mod:`~xafm.core.output`), and the
   contract a format module declares (:mod:`~xafm.core.contract`).
"""
