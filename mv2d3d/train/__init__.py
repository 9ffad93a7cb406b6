"""Training: pretraining loop, fine-tuning loop, linear-SVM / few-shot evaluation, DDP.

Not imported by ``import mv2d3d``; import ``mv2d3d.train`` (or use the CLI) explicitly.
"""
