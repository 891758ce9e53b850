"""Model side: backbone interface, multi-head classifier, LightningModule."""
