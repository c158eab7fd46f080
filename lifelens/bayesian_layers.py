"""A variational Bayesian dense layer (Bayes by Backprop, Blundell et al. 2015), native Keras 3.

Every weight and bias has a Gaussian posterior N(mu, sigma^2) with
sigma = softplus(rho), learned by maximising the evidence lower bound: the data
log-likelihood minus KL(posterior || prior), the prior being N(0, prior_std^2) on every
parameter. The KL is added with ``add_loss``, weighted by ``kl_weight`` (1 / training
set size, so the per-example loss is the ELBO divided by N).

Training draws one network per example with the local reparameterisation trick
(Kingma, Salimans & Welling 2015: sample the pre-activations, whose Gaussian is exact
for a dense layer; same gradient as weight reparameterisation, lower variance).
``sample`` draws S whole networks (S weight matrices at once, one einsum), the
posterior predictive. Called in inference mode the layer uses the posterior mean
weights, so a saved model gives a deterministic output.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def _inverse_softplus(value: float) -> float:
    return float(math.log(math.expm1(value)))


@keras.saving.register_keras_serializable(package="lifelens")
class VariationalDense(keras.layers.Layer):
    """Dense layer with a factorised Gaussian posterior over its kernel and bias.

    Args:
        units: output width K.
        activation: applied to the output (e.g. "softmax"); None for logits.
        prior_std: standard deviation of the zero-mean Gaussian prior on every parameter.
        posterior_std_init: initial posterior standard deviation (softplus(rho) at start).
        kl_weight: multiplies the KL term given to ``add_loss`` (use 1 / training-set size).
        seed: seed of the layer's own random generator (None: nondeterministic).

    Input (N, F) float; output (N, K).
    """

    def __init__(self, units: int, activation=None, prior_std: float = 1.0, posterior_std_init: float = 0.01,
                 kl_weight: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if units < 1 or prior_std <= 0 or posterior_std_init <= 0 or kl_weight < 0:
            raise ValueError("VariationalDense needs units >= 1, positive prior_std and posterior_std_init, kl_weight >= 0.")
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.prior_std = float(prior_std)
        self.posterior_std_init = float(posterior_std_init)
        self.kl_weight = float(kl_weight)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        width = int(input_shape[-1])
        rho = keras.initializers.Constant(_inverse_softplus(self.posterior_std_init))
        self.kernel_mu = self.add_weight(name="kernel_mu", shape=(width, self.units),
                                         initializer=keras.initializers.GlorotUniform(self.seed))
        self.kernel_rho = self.add_weight(name="kernel_rho", shape=(width, self.units), initializer=rho)
        self.bias_mu = self.add_weight(name="bias_mu", shape=(self.units,), initializer="zeros")
        self.bias_rho = self.add_weight(name="bias_rho", shape=(self.units,), initializer=rho)

    @property
    def kernel_std(self):
        return ops.softplus(self.kernel_rho)

    @property
    def bias_std(self):
        return ops.softplus(self.bias_rho)

    def kl_divergence(self):
        """Closed-form KL(q || p) summed over all parameters (a scalar tensor, nats)."""
        prior_var = self.prior_std ** 2

        def kl(mu, std):
            return ops.sum(math.log(self.prior_std) - ops.log(std) + (ops.square(std) + ops.square(mu)) / (2 * prior_var) - 0.5)

        return kl(self.kernel_mu, self.kernel_std) + kl(self.bias_mu, self.bias_std)

    def call(self, inputs, training=None):
        mean = ops.matmul(inputs, self.kernel_mu) + self.bias_mu
        if not training:
            return self.activation(mean)
        variance = ops.matmul(ops.square(inputs), ops.square(self.kernel_std)) + ops.square(self.bias_std)
        noise = keras.random.normal(ops.shape(mean), seed=self.seed_generator, dtype=mean.dtype)
        self.add_loss(self.kl_weight * self.kl_divergence())
        return self.activation(mean + ops.sqrt(variance) * noise)

    def sample(self, inputs, samples: int, seed: int | None = None):
        """S networks drawn from the posterior applied to (N, F) inputs -> (S, N, K) outputs.

        Network s uses one weight draw for all N inputs. ``seed`` (int) makes the draws
        reproducible; None uses the layer's generator (new draws on every call).
        """
        if samples < 1:
            raise ValueError(f"Posterior sampling needs at least one sample (got {samples}).")
        generator = self.seed_generator if seed is None else keras.random.SeedGenerator(seed)
        inputs = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        width = self.kernel_mu.shape[0]
        kernels = self.kernel_mu + self.kernel_std * keras.random.normal((samples, width, self.units), seed=generator)
        biases = self.bias_mu + self.bias_std * keras.random.normal((samples, self.units), seed=generator)
        return self.activation(ops.einsum("nf,sfk->snk", inputs, kernels) + biases[:, None, :])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "prior_std": self.prior_std,
            "posterior_std_init": self.posterior_std_init,
            "kl_weight": self.kl_weight,
            "seed": self.seed,
        }


def variational_samples(layer: VariationalDense, features: np.ndarray, samples: int = 100,
                        seed: int | None = None) -> np.ndarray:
    """(N, F) features -> (S, N, K) posterior-predictive probabilities from ``layer`` (float32 numpy)."""
    return np.asarray(layer.sample(np.asarray(features, dtype=np.float32), samples, seed), dtype=np.float32)
