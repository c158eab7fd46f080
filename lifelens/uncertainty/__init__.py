"""Frequentist and Bayesian confidence, side by side (issue 4).

* :mod:`.frequentist` - softmax point estimate, temperature scaling, Wilson intervals;
* :mod:`.mc_dropout` - Monte Carlo dropout (our fast head path and any Keras model);
* :mod:`lifelens.bayesian_layers` - the ``VariationalDense`` Bayes-by-Backprop layer (a leaf module: importing it
  registers the layer, which ``models.load_model_file`` relies on);
* :mod:`.bayes_head` - train it on frozen features and attach it to a shipped model;
* :mod:`.metrics` - ECE, NLL, Brier, reliability, entropy/mutual information, per-image summary;
* :mod:`.report` - confidence report on a labelled set, referral curves, OOD AUROC;
* :mod:`.calibration` - all of the above for one shipped model, written into its card.
"""
from lifelens.uncertainty.features import features_of, split_features
from lifelens.uncertainty.frequentist import (accuracy_with_interval, fit_temperature, head_logits,
                                              probabilities_to_logits, softmax, wilson_interval)
from lifelens.uncertainty.mc_dropout import (DEFAULT_SAMPLES, has_head_layout, mc_dropout_head,
                                             mc_dropout_predict, stochastic_view)
from lifelens.uncertainty.metrics import (bayesian_summary, brier_score, entropy, expected_calibration_error,
                                          mutual_information, negative_log_likelihood, reliability,
                                          uncertainty_decomposition)
from lifelens.uncertainty.report import confidence_report, head_predictions, ood_auroc, ood_images, referral_accuracy
from lifelens.bayesian_layers import VariationalDense, variational_samples

__all__ = [
    "DEFAULT_SAMPLES", "VariationalDense", "accuracy_with_interval", "bayesian_summary", "brier_score",
    "confidence_report", "entropy", "expected_calibration_error", "features_of", "fit_temperature",
    "has_head_layout", "head_logits", "head_predictions", "mc_dropout_head", "mc_dropout_predict",
    "mutual_information", "negative_log_likelihood", "ood_auroc", "ood_images", "probabilities_to_logits",
    "referral_accuracy", "reliability", "softmax", "split_features", "stochastic_view",
    "uncertainty_decomposition", "variational_samples", "wilson_interval",
]
