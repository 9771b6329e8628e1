"""Draw a digit in the browser and watch the network read it and add an addend to it.

    python demo.py                             # http://127.0.0.1:7860, with model.zip
    python demo.py --model other.zip --port 8000

A Gradio page: draw a digit on the canvas (mouse or finger) or upload a photo
of one, and pick an addend. Like predict.py, the picture goes through
`preprocess_image` to the 28x28 MNIST-style input the network reads; the page
shows that input, enlarged, next to the network's two outputs: the most likely
digits and sums with their probabilities. It answers as you draw.

Everything stays on this machine: the server listens on 127.0.0.1 only, makes
no share link, sends no analytics, and the page loads nothing from the internet.
"""

import argparse
import functools
from pathlib import Path

import gradio as gr
import numpy as np

from data_creation import NUM_DIGITS
from evaluate_func import load_saved_model, predict_digit_and_sum
from image_preprocessing import preprocess_image

PROG = "demo.py"
TOP_CLASSES = 3  # bars shown per output
ZOOM = 10  # the 28x28 input is shown at 280x280, each pixel a 10x10 square
CANVAS_SIZE = (400, 400)
MAX_UPLOAD = "20mb"  # a phone photo is a few MB; Gradio refuses larger files with a message
PROMPT = "Draw a digit on the canvas, or upload a photo of one."
EMPTY_CANVAS = "The canvas is empty: pick the brush and draw a digit with the mouse or a finger."


# --------------------------------------------------------------------------- what the page calls


def read_drawing(model, canvas, addend):
    """Answer for the sketchpad; `canvas` is its value: a dict whose 'composite' is the drawing (grey, 0-255)."""
    drawing = None if canvas is None else canvas["composite"]
    if drawing is None or np.ptp(drawing) == 0:  # nothing drawn: one flat colour
        return no_answer(EMPTY_CANVAS)
    return read_picture(model, drawing, addend, "the drawing")


def read_photo(model, path, addend):
    """Answer for an uploaded photo, given as the path of Gradio's copy of the file."""
    if path is None:
        return no_answer(PROMPT)
    return read_picture(model, path, addend, Path(path).name)


def change_addend(model, network_input, addend):
    """Answer again for the 28x28 input already read, with a new addend."""
    if network_input is None:
        return None, None, PROMPT
    return answer(model, network_input, addend)


# --------------------------------------------------------------------------- reading and answering


def read_picture(model, source, addend, name):
    """Turn a drawing or photo into the network's 28x28 input and answer for it.

    Returns what the page shows: the input (kept for a new addend), its enlarged
    picture, the digit and sum bars, and a status line; bad input gets only the
    status line, in words fit for the page (the server's temporary paths become `name`).
    """
    try:
        network_input = preprocess_image(source)
    except (OSError, ValueError) as error:
        message = str(error).replace(str(source), name) if isinstance(source, str) else str(error)
        return no_answer(f"**Could not read {name}.** {message}")
    return network_input, enlarge(network_input), *answer(model, network_input, addend)


def no_answer(message):
    """Empty input, picture and bars, and `message` as the status line."""
    return None, None, None, None, message


def answer(model, network_input, addend):
    """The digit bars, the sum bars and a status line for one 28x28 input and an addend."""
    predicted = predict_digit_and_sum(model, network_input[..., 0], addend)
    digit, total = int(predicted["digit"][0]), int(predicted["sum"][0])
    return (
        probability_bars(predicted["digit_probability"][0]),
        probability_bars(predicted["sum_probability"][0]),
        describe(digit, addend, total),
    )


def probability_bars(probabilities):
    """A {class: probability} dict, the value gr.Label draws as bars."""
    return {str(label): float(probability) for label, probability in enumerate(probabilities)}


def describe(digit, addend, total):
    """One line: the reading as a sum, and a note when the network's two outputs disagree."""
    if total == digit + addend:
        return f"**{digit} + {addend} = {total}**"
    return (
        f"**{digit} + {addend} → {total}**: the sum output is not the digit output plus {addend}; "
        "they are two separate guesses of the network"
    )


def enlarge(network_input):
    """The 28x28 input as a ZOOM times larger uint8 picture, sharp squares rather than a blur."""
    pixels = np.rint(network_input[..., 0]).astype(np.uint8)
    return pixels.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


# --------------------------------------------------------------------------- the page


def build_app(model):
    """The Gradio page, its events bound to `model`; nothing runs until it is launched."""
    with gr.Blocks(title="Digit + addend", analytics_enabled=False) as app:
        gr.Markdown(
            "# Digit + addend\n"
            "Draw a digit (or upload a photo of one) and pick an addend. One Keras network reads the "
            "28x28 image and the addend, and answers twice: the digit, and the digit plus the addend."
        )
        network_input = gr.State()  # the 28x28 input last read, answered again when the addend changes
        with gr.Row():
            with gr.Column():
                with gr.Tab("Draw"):
                    canvas = gr.Sketchpad(
                        label="Draw one digit",
                        elem_id="canvas",
                        image_mode="L",  # grey, the strokes laid on white paper
                        canvas_size=CANVAS_SIZE,
                        layers=False,  # one digit, one canvas: no layer or crop tools
                        transforms=(),
                        brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=14),  # a felt pen
                    )
                with gr.Tab("Upload a photo"):
                    photo = gr.File(label="A photo or scan of one digit", file_types=["image"], elem_id="photo")
                addend = gr.Radio(list(range(NUM_DIGITS)), value=3, label="Addend", elem_id="addend")
            with gr.Column():
                status = gr.Markdown(PROMPT, elem_id="status")
                with gr.Row():
                    digit_bars = gr.Label(label="Digit", num_top_classes=TOP_CLASSES, elem_id="digit")
                    sum_bars = gr.Label(label="Digit + addend", num_top_classes=TOP_CLASSES, elem_id="sum")
                picture = gr.Image(
                    label="What the network sees: 28x28 pixels",
                    format="png",
                    interactive=False,
                    buttons=[],
                    elem_id="network-input",
                )
        # The page passes the components' values; functools.partial adds the model in front of them.
        answers = [digit_bars, sum_bars, status]
        reading = [network_input, picture, *answers]
        canvas.change(functools.partial(read_drawing, model), [canvas, addend], reading, api_name="read_drawing")
        photo.change(functools.partial(read_photo, model), [photo, addend], reading, api_name="read_photo")
        addend.change(
            functools.partial(change_addend, model), [network_input, addend], answers, api_name="change_addend"
        )
    return app


# --------------------------------------------------------------------------- the command line


def port(text):
    """argparse type: a TCP port number 1-65535."""
    number = int(text)  # a ValueError becomes argparse's "invalid port value"
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1-65535, got {number}")
    return number


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description="Serve a page that reads a drawn digit and adds to it.")
    parser.add_argument("--model", default="model.zip", help="the trained model (default: %(default)s)")
    parser.add_argument("--port", type=port, default=7860, help="the port on 127.0.0.1 (default: %(default)s)")
    return parser


def main(argv=None):
    """Load the model and serve the page until interrupted; a bad model or a taken port exits with status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        model = load_saved_model(args.model)
    except Exception as error:  # a broken file fails in many ways: zipfile, zlib, h5py, Keras
        parser.exit(2, f"{PROG}: error: cannot load the model: {' '.join(str(error).split())}\n")
    try:  # this machine only: no share link, and no run history kept in the browser
        build_app(model).launch(
            server_name="127.0.0.1", server_port=args.port, share=False, max_file_size=MAX_UPLOAD, run_history=False
        )
    except OSError:  # Gradio's "Cannot find empty port"
        parser.exit(2, f"{PROG}: error: port {args.port} is in use; pick another with --port\n")


if __name__ == "__main__":
    main()
