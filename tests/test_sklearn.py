"""The scikit-learn transformers: estimator checks, a Pipeline with a classifier, a grid search."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import check_estimator

from autoencoder_toolkit.sklearn import InfoMaxVAETransformer, VAETransformer


@pytest.mark.parametrize("estimator", [InfoMaxVAETransformer(epochs=1, hidden=(4,), random_state=0),
                                       VAETransformer(epochs=1, hidden=(4,), random_state=0)],
                         ids=["infomax", "vae"])
def test_the_transformers_pass_scikit_learns_estimator_checks(estimator):
    results = check_estimator(estimator, on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    # the only skip: scikit-learn runs its array-API check only with SCIPY_ARRAY_API=1 set
    assert skipped <= {"check_array_api_input"}
    assert len(results) > 40


def test_a_pipeline_with_a_classifier_on_digits():
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    pipe = make_pipeline(InfoMaxVAETransformer(latent_dim=8, hidden=(64,), epochs=15, random_state=0),
                         LogisticRegression(max_iter=2000))
    accuracy = pipe.fit(x_train, y_train).score(x_test, y_test)
    assert accuracy > 0.8, accuracy  # chance is 0.1
    transformer = pipe[0]
    codes = transformer.transform(x_test)
    assert codes.shape == (len(x_test), 8) and codes.dtype == np.float64
    # the float64 transform is the trained model's encoding
    np.testing.assert_allclose(codes, transformer.model_.encode(x_test.astype(np.float32)), rtol=1e-4, atol=1e-5)
    back = transformer.inverse_transform(codes)
    assert back.shape == x_test.shape and ((back >= 0) & (back <= 1)).all()
    assert list(transformer.get_feature_names_out()) == [f"infomaxvaetransformer{i}" for i in range(8)]


def test_parameters_work_with_clone_and_grid_search():
    x, _ = load_digits(return_X_y=True)
    x = x[:300] / 16.0
    t = VAETransformer(latent_dim=3, hidden=(8,), epochs=2, random_state=1)
    assert clone(t).get_params() == t.get_params()
    t.set_params(beta=4.0)
    assert t.beta == 4.0
    pipe = make_pipeline(VAETransformer(hidden=(8,), epochs=2, random_state=0), LogisticRegression(max_iter=500))
    y = load_digits().target[:300]
    search = GridSearchCV(pipe, {"vaetransformer__latent_dim": [2, 4]}, cv=2).fit(x, y)
    assert search.best_params_["vaetransformer__latent_dim"] in (2, 4)
    # deterministic for a fixed random_state
    a = VAETransformer(hidden=(8,), epochs=2, random_state=5).fit_transform(x)
    b = VAETransformer(hidden=(8,), epochs=2, random_state=5).fit_transform(x)
    np.testing.assert_array_equal(a, b)


def test_bad_parameters_are_refused_at_fit():
    x = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError, match="scale: expected 'auto', 'none', 'minmax' or 'standard', got 'log'"):
        InfoMaxVAETransformer(scale="log").fit(x)
    with pytest.raises(ValueError, match="decoder: expected 'auto', 'bernoulli' or 'gaussian'"):
        VAETransformer(decoder="poisson").fit(x)
