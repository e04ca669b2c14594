"""nb2flow inside Jupyter: the IPython extension (``%load_ext nb2flow``: :mod:`.magics`), the
Jupyter server extension behind the JupyterLab / Notebook 7 extension (:mod:`.server`), and
what both show of a notebook, cell by cell (:mod:`.cells`). They drive the converter and the
runtime from the notebook; the panel and its rendering stay in :mod:`nb2flow.jupyter`."""
