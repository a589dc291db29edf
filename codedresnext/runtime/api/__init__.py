"""The application API: what a program that uses exported graphs calls. Detectors (binary, subset,
with early reject), the early-exit cascade with host-side batch compaction, `predict` on image
files, and how graphs are found in an export and fed images. Re-exported by `codedresnext.runtime`."""
