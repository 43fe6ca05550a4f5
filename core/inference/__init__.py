"""Answers for one listing or many: the category classifier over the three models, and the
suggested price."""
