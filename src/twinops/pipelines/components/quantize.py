# KFP serializes parameter defaults into the component spec (never mutated: B006) and passes
# every input by keyword (PLR0917).
"""The quantize component: GPTQ quantization of the aligned model.

Two shapes of one step. On a cluster it is a *container* component in the quantize image
(gptqmodel needs protobuf>=7.34, kfp needs protobuf<7: they cannot share an image, so that image
carries no kfp executor). Under ``kfp.local`` (the SubprocessRunner runs only Python components) it
is a Python component that hands the work to ``.venv-quantize``, the way the image would.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from twinops.pipelines.images import ImageFamily, image


@dsl.container_component
def quantize(
    model: Input[Model],
    calibration: Input[Dataset],
    quantized: Output[Model],
    bits: int = 4,
    options: str = "{}",
):
    """Quantize the merged model to GPTQ (``bits`` per weight) in the quantize image.

    Runs ``python -m twinops.pipelines.quantize_step``, which calls ``twinops.quantize``: the
    result is a transformers-loadable folder (``quantization_config`` in ``config.json``) under
    ``TWINOPS_HOME/runs/gptq/<source run>-w<bits>g<group>/``.

    Args:
        model: Pointer to the merged model to quantize (from ``dpo``).
        calibration: Pointer to the dataset whose texts calibrate GPTQ (the author's own writing).
        bits: Bits per weight (2, 3, 4 or 8); 0 passes the model through unquantized.
        options: Extra ``QuantizeJob`` fields as a JSON object (group size, calibration samples).
        quantized: Pointer to the quantized model folder.
    """
    return dsl.ContainerSpec(
        image=image(ImageFamily.QUANTIZE),
        command=["python", "-m", "twinops.pipelines.quantize_step"],
        args=[
            "--model-pointer",
            model.path,
            "--output-pointer",
            quantized.path,
            "--calibration-pointer",
            calibration.path,
            "--bits",
            bits,
            "--options",
            options,
        ],
    )


@dsl.component(base_image=image(ImageFamily.DATA), install_kfp_package=False)
def quantize_local(
    model: Input[Model],
    calibration: Input[Dataset],
    quantized: Output[Model],
    bits: int = 4,
    options: str = "{}",
):
    """Quantize the merged model to GPTQ in ``.venv-quantize`` (the local shape of ``quantize``).

    Args:
        model: Pointer to the merged model to quantize (from ``dpo``).
        calibration: Pointer to the dataset whose texts calibrate GPTQ (the author's own writing).
        bits: Bits per weight (2, 3, 4 or 8); 0 passes the model through unquantized.
        options: Extra ``QuantizeJob`` fields as a JSON object (group size, calibration samples).
        quantized: Pointer to the quantized model folder.
    """
    import json

    from twinops.pipelines import quantize_step

    pointer = quantize_step.run(model.path, quantized.path, bits, json.loads(options), calibration.path)
    for key, value in pointer.items():
        quantized.metadata[key] = value
