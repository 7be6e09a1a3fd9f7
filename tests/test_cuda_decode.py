"""nvJPEG against the CPU path on odd JPEGs (marker `cuda`, skipped without a GPU; run by the prepared
GPU check): CMYK, grayscale, progressive, 4:4:4 and truncated files train on the images, labels and
order the CPU path trains on, the pixels within the two resizers' rounding."""

import pytest
import torch
from test_device_decode import odd_folder
from test_streams import write_folder

from layerlth.data.stream_data import StreamData

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is False"),
]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def folder(cifar_fixture, tmp_path_factory):
    return write_folder(cifar_fixture, tmp_path_factory.mktemp("cuda-decode"), train=96, val=32, size=64)


@pytest.mark.parametrize("kind", ["cmyk", "gray", "progressive", "444", "truncated"])
def test_nvjpeg_trains_on_the_cpu_paths_images_for_odd_jpegs(folder, tmp_path, kind):
    odd = odd_folder(folder, tmp_path / kind, [kind] * 4)
    made = {}
    for decode_on in ("cpu", "cuda"):
        data = StreamData(odd, image_size=48, workers=0, device=CUDA, decode_on=decode_on)
        made[decode_on] = list(data.stream_batches(32, True, torch.Generator().manual_seed(5))), data.skipped
    (cpu, cpu_skipped), (gpu, gpu_skipped) = made["cpu"], made["cuda"]
    assert gpu_skipped == cpu_skipped == (4 if kind == "truncated" else 0)
    assert [len(y) for _, y in gpu] == [len(y) for _, y in cpu]
    for (a, ya), (b, yb) in zip(cpu, gpu):
        assert torch.equal(ya, yb)
        levels = (a - b).abs() * data.channel_stats[1].to(CUDA)[:, None, None]
        assert levels.mean() < 1.0
