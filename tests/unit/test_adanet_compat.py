def test_adanet_imports_through_the_shim():
    from models.adanet_compat import adanet

    assert adanet.Estimator is not None
    assert adanet.subnetwork.Builder is not None
    # The module adanet imports lazily while training must resolve to TF 2.15's new home.
    from tensorflow.python.training.tracking import graph_view

    assert hasattr(graph_view, "ObjectGraphView")
