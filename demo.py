"""Draw a digit in the browser (or upload a photo of one), pick an addend, and watch the network answer.

    python demo.py --model model.zip --port 7860    # then open http://127.0.0.1:7860

Everything stays on this machine: the server listens on 127.0.0.1 only, makes no share link, sends no analytics.
"""

import argparse
import hashlib
import io
import os
import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from quiet_keras import import_keras_quietly

ZOOM = 10  # the 28x28 input is shown at 280x280, each pixel a 10x10 square
CANVAS_SIZE = (400, 400)
PROMPT = "Draw a digit on the canvas, or upload a photo of one."
UNLIKE_A_DIGIT = "This does not look much like a digit: the network is unsure (see README)."
PICTURE_DIR = Path(tempfile.gettempdir()) / "mnist-digit-sum-demo"  # the enlarged inputs shown in the page
DRAW, UPLOAD = "Draw", "Upload a photo"  # the two tabs
# The canvas at the start and after "Clear": white paper and a clear layer to draw on. Gradio picks the brush for
# a canvas with a background, and loading the layer uses up the canvas's first change, which Gradio ignores.
BLANK_SHEET = {
    "background": np.full(CANVAS_SIZE, 255, np.uint8),
    "layers": [np.zeros((*CANVAS_SIZE, 4), np.uint8)],
    "composite": None,
}
# The page's words for image_preprocessing's errors, found by a phrase of theirs (which name the server's copy).
PLAIN_WORDS = {
    "not a readable image": "It is not an image file this page can open (PNG, JPEG, GIF, WebP, ...).",
    "too large": "It has too many pixels to open safely; a photo of a few megapixels is plenty.",
    "no digit found": "No digit stands out in it: it looks blank, uniform or too faint.",
}
# Ten addend choices on one line: narrower than Gradio's default (6px 12px of padding each).
CSS = "#addend label { padding-inline: 6px; }"


def read_drawing(model, canvas, addend, tab=DRAW):
    """Answer for the sketchpad, whose value is a dict with the drawing (grey, 0-255) as 'composite'; none while
    the other tab is on screen (the canvas still changes behind it as it loads)."""
    if tab != DRAW:
        return (gr.skip(),) * 5
    if canvas is None or canvas["composite"] is None or np.ptp(canvas["composite"]) == 0:  # one flat colour
        return None, None, None, None, PROMPT
    return read_picture(model, canvas["composite"], addend, "the drawing")


def read_photo(model, path, addend):
    """Answer for an uploaded photo, given as the path of Gradio's copy of the file."""
    if path is None:
        return None, None, None, None, PROMPT
    return read_picture(model, path, addend, Path(path).name)


def pick_tab(model, tab, picture, addend):
    """The tab just picked, for the page to keep, and the answer for its picture in place of the other tab's."""
    read = read_drawing if tab == DRAW else read_photo
    return tab, *read(model, picture, addend)


def read_picture(model, source, addend, name):
    """The 28x28 input (kept for a new addend), it enlarged, the digit and sum bars and a status line."""
    from image_preprocessing import preprocess_image  # loaded by main, quietly, with Keras

    try:
        network_input = preprocess_image(source)
    except (OSError, ValueError) as error:
        reason = next((words for key, words in PLAIN_WORDS.items() if key in str(error)), "It is not a usable image.")
        return None, None, None, None, f"**Could not read {name}.** {reason}"
    pixels = np.rint(network_input[..., 0]).astype(np.uint8)
    picture = picture_file(pixels.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1))  # sharp squares rather than a blur
    return network_input, picture, *change_addend(model, network_input, addend)


def picture_file(pixels):
    """A PNG file of `pixels`, named by its content and written whole before it appears under that name.
    (Given an array, Gradio rewrites one such file in place for every request, and two requests for the same
    picture at once could send a half-written file.)"""
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "png")
    path = PICTURE_DIR / f"{hashlib.sha256(data.getvalue()).hexdigest()}.png"
    if not path.exists():
        PICTURE_DIR.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=PICTURE_DIR, suffix=".tmp", delete=False) as staged:
            staged.write(data.getvalue())
        os.replace(staged.name, path)
    return str(path)


def change_addend(model, network_input, addend):
    """The digit bars, the sum bars and a status line for a 28x28 input and an addend; no change without an input."""
    from evaluate_func import predict_digit_and_sum  # loaded by main, quietly

    if network_input is None:  # nothing read: the prompt or the message on the page stays
        return gr.skip(), gr.skip(), gr.skip()
    predicted = predict_digit_and_sum(model, network_input[..., 0], addend)
    status = describe(int(predicted["digit"][0]), addend, int(predicted["sum"][0]))
    if not predicted["looks_like_a_digit"][0]:
        status += f"<br>{UNLIKE_A_DIGIT}"
    return bars(predicted["digit_probability"][0]), bars(predicted["sum_probability"][0]), status


def bars(probabilities):
    """A {class: probability} dict, which gr.Label draws as bars."""
    return {str(label): float(probability) for label, probability in enumerate(probabilities)}


def describe(digit, addend, total):
    """The reading as a sum, and a note when the network's two outputs disagree."""
    if total == digit + addend:
        return f"**{digit} + {addend} = {total}**"
    return (
        f"**{digit} + {addend} → {total}**: the sum output is not the digit output plus {addend}; "
        "they are two separate guesses of the network"
    )


def build_app(model):
    """The Gradio page, its events bound to `model`; nothing runs until it is launched."""
    with gr.Blocks(title="Digit + addend", analytics_enabled=False) as app:
        gr.Markdown(
            "# Digit + addend\n"
            "Draw a digit (or upload a photo of one) and pick an addend. One Keras network reads the "
            "28x28 image and the addend, and answers twice: the digit, and the digit plus the addend."
        )
        network_input = gr.State()  # the 28x28 input last read, answered again when the addend changes
        tab = gr.State(DRAW)  # the tab on screen
        status = gr.Markdown(PROMPT, elem_id="status")  # above the canvas, so a phone shows it too
        with gr.Row():
            with gr.Column():
                with gr.Tab(DRAW) as draw_tab:
                    canvas = gr.Sketchpad(
                        BLANK_SHEET,
                        label="Draw one digit",
                        elem_id="canvas",
                        image_mode="L",  # grey, the strokes laid on white paper
                        canvas_size=CANVAS_SIZE,
                        layers=False,  # one digit, one canvas: no layer or crop tools
                        transforms=(),
                        brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=14),  # a felt pen
                    )
                with gr.Tab(UPLOAD) as photo_tab:
                    photo = gr.File(label="A photo or scan of one digit", file_types=["image"], elem_id="photo")
                addend = gr.Radio(list(range(10)), value=3, label="Addend", elem_id="addend")
            with gr.Column():
                with gr.Row():
                    digit_bars = gr.Label(label="Digit", num_top_classes=3, elem_id="digit")
                    sum_bars = gr.Label(label="Digit + addend", num_top_classes=3, elem_id="sum")
                picture = gr.Image(
                    label="What the network sees: 28x28 pixels", format="png", buttons=[], elem_id="network-input"
                )
        # The page passes the components' values; partial puts the model in front of them. The answer always belongs
        # to the picture and the addend on screen: picking a tab reads its picture again, the canvas is not read
        # behind the other tab, the events take turns, and each reading is answered again with the addend picked by
        # the time it is done.
        answers = [digit_bars, sum_bars, status]
        reading = [network_input, picture, *answers]
        in_turn = {"concurrency_id": "reading"}
        inner = {"api_visibility": "private", **in_turn}  # not for gradio_client
        answer = partial(change_addend, model)
        readings = [
            canvas.change(
                partial(read_drawing, model), [canvas, addend, tab], reading, api_name="read_drawing", **in_turn
            ),
            photo.change(partial(read_photo, model), [photo, addend], reading, api_name="read_photo", **in_turn),
            draw_tab.select(partial(pick_tab, model, DRAW), [canvas, addend], [tab, *reading], **inner),
            photo_tab.select(partial(pick_tab, model, UPLOAD), [photo, addend], [tab, *reading], **inner),
        ]
        for read in readings:
            read.then(answer, [network_input, addend], answers, show_progress="hidden", **inner)
        addend.change(answer, [network_input, addend], answers, api_name="change_addend", **in_turn)
        canvas.clear(lambda: BLANK_SHEET, outputs=canvas, api_visibility="private")  # a new sheet, the brush picked
    return app


def port(text):
    """argparse type: a TCP port number 1-65535."""
    if not 1 <= int(text) <= 65535:  # a ValueError becomes argparse's "invalid port value"
        raise argparse.ArgumentTypeError(f"must be 1-65535, got {text}")
    return int(text)


def main(argv=None):
    """Load the model and serve the page until interrupted; a bad model or a taken port exits with status 2."""
    parser = argparse.ArgumentParser(prog="demo.py", description="Serve a page that reads a digit and adds to it.")
    parser.add_argument("--model", default="model.zip", help="the trained model (default: %(default)s)")
    parser.add_argument("--port", type=port, default=7860, help="the port on 127.0.0.1 (default: %(default)s)")
    args = parser.parse_args(argv)
    import_keras_quietly()  # TensorFlow's C++ start-up notices kept off the terminal
    from evaluate_func import load_saved_model

    try:
        model = load_saved_model(args.model)
    except (OSError, ValueError) as error:  # what load_saved_model raises for a missing or broken file
        parser.exit(2, f"{parser.prog}: error: cannot load the model: {' '.join(str(error).split())}\n")
    app = build_app(model)
    try:  # this machine only, no share link, no run history kept in the browser; a phone photo is a few MB
        app.launch(
            server_name="127.0.0.1",
            server_port=args.port,
            share=False,
            max_file_size="20mb",
            run_history=False,
            css=CSS,
        )
    except OSError:  # Gradio's "Cannot find empty port"
        parser.exit(2, f"{parser.prog}: error: port {args.port} is in use; pick another with --port\n")


if __name__ == "__main__":
    main()
