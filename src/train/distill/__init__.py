"""Distillation: cheaper students of the shipped teacher, and the routing that puts them in front
of it (`reportguard distill`; see transfer.py, teacher.py, tier1.py, tier2.py, routing.py)."""
