"""ModelCardGenerator: a model card (Markdown and HTML) for every pushed model, beside its SavedModel.

See `components.model_card.component` for what it reads and where it writes.
"""

from components.model_card.component import ModelCard, ModelCardGenerator

__all__ = ['ModelCard', 'ModelCardGenerator']
