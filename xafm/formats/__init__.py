"""The file formats xafm reads and writes, one module each.

Every module declares itself once, as ``FORMAT`` (:class:`xafm.core.contract.Format`);
:mod:`xafm.registry` builds the format table from those declarations. The modules whose
name starts with ``_`` are what several formats share (bundle content, HDF5, channel
choice, text headers, units). Animated exports are renderers and live in
:mod:`xafm.animation`.
"""
