import pytest
import torch


@pytest.fixture
def one_thread():
    """Run with one intra-op thread (much faster on shared, busy cores), then restore the setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
