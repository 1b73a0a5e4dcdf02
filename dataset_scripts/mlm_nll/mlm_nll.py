"""MLM NLL: the Cerbero-7B quality metric, a masked-LM pseudo-log-likelihood per text (evaluate module).

Each text is tokenised; every token (``[UNK]`` included) is masked in turn and the masked LM's negative
log-probability of the true token is averaged over the tokens (natural log). Texts longer than the model window are scored with
sliding windows (stride half a window) so every token is scored exactly once. The scoring is ``pll_core.py``
in this folder (torch and transformers only; ``evaluate.load`` copies it with this script); the cerbero-hf
library's ``PLLScorer`` runs the same file, so the metric needs no cerbero-hf install.
"""

import datasets
import evaluate

from .pll_core import PLLCore, summarize

_DESCRIPTION = """\
MLM NLL scores how well formed a text is with a masked language model: each token is masked in turn and the
model's negative log-probability of the true token is averaged over the text's tokens (the pseudo-log-likelihood
of Salazar et al. 2020, per token). Lower is better. Cerbero-7B keeps only chat messages scoring below 2 with
an Italian BERT.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (list of str): the texts to score (each must contain at least one token to score, [UNK]
        included, else ValueError).
    model_id (str): a masked LM, Hub id or local folder. Default: dbmdz/bert-base-italian-xxl-cased.
    variant (str): "pll" (plain PLL, the paper's) or "word_l2r" (Kauf & Ivanova 2023). Default "pll".
    max_nll (float): threshold for `share_under` (strict <). Default 2.0.
    batch_tokens (int): tokens per forward pass. Default: sized to the model and device.
    device (str): "cpu", "cuda", ... Default: CUDA when available.
Returns:
    nll (list of float): mean negative log-likelihood per token of each text (natural log).
    n_tokens (list of int): scored tokens per text.
    mean_nll, median_nll (float): mean and median of the per-text NLLs.
    token_mean_nll (float): NLL averaged over all scored tokens; pseudo_perplexity = exp(token_mean_nll).
    share_under (float): share of texts with nll < max_nll.
Examples:
    >>> mlm_nll = evaluate.load("mlm_nll")
    >>> out = mlm_nll.compute(predictions=["Mia madre prepara la cena."], model_id="dbmdz/bert-base-italian-xxl-cased")
    >>> sorted(out)
    ['mean_nll', 'median_nll', 'n_tokens', 'nll', 'pseudo_perplexity', 'share_under', 'token_mean_nll']
"""

_CITATION = """\
@inproceedings{salazar-etal-2020-masked,
    title = "Masked Language Model Scoring",
    author = "Salazar, Julian and Liang, Davis and Nguyen, Toan Q. and Kirchhoff, Katrin",
    booktitle = "Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics",
    year = "2020",
    pages = "2699--2712",
}
@article{galatolo2023cerbero,
    title = "Cerbero-7B: A Leap Forward in Language-Specific LLMs Through Enhanced Chat Corpus Generation and Evaluation",
    author = "Galatolo, Federico A. and Cimino, Mario G.C.A.",
    journal = "arXiv preprint arXiv:2311.15698",
    year = "2023",
}
"""

DEFAULT_MODEL = "dbmdz/bert-base-italian-xxl-cased"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MlmNll(evaluate.Metric):
    """Per-text masked-LM NLL and its aggregates."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=["https://arxiv.org/abs/1910.14659", "https://arxiv.org/abs/2311.15698"],
        )

    def _compute(self, predictions, model_id=DEFAULT_MODEL, variant="pll", max_nll=2.0, batch_tokens=None,
                 device=None):
        key = (str(model_id), variant, batch_tokens, device)
        if getattr(self, "_scorer_key", None) != key:  # reuse the loaded model across compute calls
            self._scorer = PLLCore(model_id, variant=variant, batch_tokens=batch_tokens, device=device)
            self._scorer_key = key
        scores = self._scorer.score(list(predictions))
        nll = [s.nll for s in scores]
        n_tokens = [s.n_tokens for s in scores]
        summary = summarize(nll, threshold=max_nll)
        token_mean = sum(v * n for v, n in zip(nll, n_tokens)) / sum(n_tokens)
        return {
            "nll": nll,
            "n_tokens": n_tokens,
            "mean_nll": summary["mean"],
            "median_nll": summary["median"],
            "token_mean_nll": token_mean,
            "pseudo_perplexity": 2.718281828459045 ** token_mean,
            "share_under": summary["share_under"],
        }
