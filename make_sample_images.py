"""Write sample_images/: photos-to-be of handwritten and printed digits that are not from MNIST.

    python make_sample_images.py

Every digit 0-9 appears in several hands: pen, pencil, marker, chalk and print, slanted, turned and wobbly, on paper
with uneven light, grain, specks and a shadow, some as light ink on a dark board, some small in a large frame, some
cropped so tightly that their strokes run along the picture's edges. Each file name starts with its true digit
(`7_pen_crossbar.jpg`), which is all `predict.py` and the tests need to score them. Drawn with Pillow from the stroke
templates below; the seed makes every run write the same files.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

OUT_DIR = Path(__file__).resolve().parent / "sample_images"
SEED = 2024
SUPERSAMPLE = 4  # draw at 4x, then shrink: smooth edges

# Ink and paper colours (RGB).
BLUE_PEN, BLACK_PEN, RED_PEN, GREEN_FELT = (30, 45, 140), (25, 25, 30), (175, 30, 35), (25, 115, 55)
PENCIL, CHALK, WHITE_PAINT = (90, 90, 100), (236, 236, 226), (250, 250, 245)
WHITE_PAPER, CREAM_PAPER, GREY_PAPER = (246, 244, 238), (240, 229, 202), (205, 205, 200)
BOARD, SCREEN = (40, 58, 50), (18, 18, 24)


def hand(*strokes):
    """Strokes written as "x y, x y, ..." on a 60 x 100 grid (y down): lists of (x, y) in shares of the height."""
    return [[tuple(int(n) / 100 for n in point.split()) for point in stroke.split(",")] for stroke in strokes]


def arc(cx, cy, rx, ry, start, stop, count=40):
    """A stroke along an ellipse, centre and radii on the grid, from angle `start` to `stop` in degrees."""
    cx, cy, rx, ry = cx / 100, cy / 100, rx / 100, ry / 100
    angles = np.radians(np.linspace(start, stop, count))
    return list(zip(cx + rx * np.cos(angles), cy + ry * np.sin(angles), strict=True))


@dataclass
class Sample:
    """One picture: its file name (true digit first) and how it is drawn and lit."""

    name: str
    hand: int = 0  # index into HANDS[digit]; -1 prints the digit in Pillow's own font
    size: tuple = (360, 480)  # picture (width, height) in pixels
    height: float = 0.55  # digit height, share of the picture height
    centre: tuple = (0.5, 0.5)  # digit centre, shares of the picture width and height
    pen: float = 0.06  # pen width, share of the digit height
    slant: float = 0.15  # shear: the top leans right by this share of the height
    turn: float = 0.0  # rotation in degrees, counter-clockwise
    wobble: float = 0.02  # shaky hand: amplitude of a smooth random warp
    ink: tuple = BLUE_PEN
    paper: tuple = WHITE_PAPER
    light: float = 0.25  # uneven light: how much darker the far corner is
    shadow: bool = False  # a soft shadow across part of the sheet
    grain: float = 5.0  # noise level
    specks: int = 12  # dust and dots on the paper
    chalky: bool = False  # broken, grainy strokes
    mode: str = "RGB"  # how a PNG is stored: "L" grey, "P" palette, "RGBA" ink on a transparent sheet

    @property
    def digit(self):
        return int(self.name[0])


# fmt: off
# Each digit's hands, each a list of strokes (see `hand` and `arc`).
HANDS = {
    0: [[arc(30, 50, 28, 50, -95, 275)], [arc(30, 50, 22, 50, -70, 255)]],
    1: [hand("33 0, 30 50, 27 100"), hand("12 22, 36 0", "36 0, 33 100")],
    2: [hand("4 25, 12 8, 30 0, 50 7, 56 25, 48 45, 28 70, 3 98", "3 98, 60 96"),
        hand("6 28, 20 4, 42 2, 55 20, 45 48, 20 78, 5 97, 25 90, 45 95, 62 100"),
        hand("5 22, 18 5, 36 0, 52 10, 52 32, 30 62, 2 100", "2 100, 60 100")],  # a long flat base
    3: [hand("6 12, 25 0, 47 6, 50 24, 33 43, 20 46", "33 44, 52 56, 56 77, 42 96, 20 100, 2 88"),
        hand("5 0, 55 0", "55 0, 25 38", "25 38, 45 42, 58 62, 50 88, 28 100, 3 90")],
    4: [hand("40 0, 2 64", "2 64, 60 64", "47 30, 47 100"),
        hand("10 0, 6 55", "6 55, 60 52", "50 0, 47 100")],
    5: [hand("55 0, 12 1", "12 1, 8 43", "8 43, 30 36, 52 47, 56 70, 42 94, 20 100, 2 90"),
        hand("22 0, 58 -2", "14 4, 10 43", "10 43, 32 37, 52 50, 54 74, 38 95, 16 98, 3 88")],  # bar off the stem
    6: [hand("50 2, 30 12, 13 37, 6 66, 13 92, 31 100, 50 90, 55 70, 42 55, 22 56, 8 70"),
        hand("45 0, 10 60, 12 90, 30 100, 50 88, 50 66, 30 57, 12 68")],
    7: [hand("2 4, 58 0", "58 0, 40 45, 24 100"),
        hand("2 4, 58 0", "58 0, 40 45, 24 100", "20 52, 55 50")],
    8: [hand("48 12, 30 0, 10 10, 12 30, 30 46, 50 62, 55 84, 32 100, 6 86, 10 63, 30 46, 47 30, 48 12"),
        [arc(30, 24, 20, 24, -90, 275), arc(30, 73, 26, 27, -90, 275)]],
    9: [hand("52 14, 32 0, 10 8, 7 28, 24 42, 48 34, 54 14", "54 14, 50 55, 44 100"),
        [arc(30, 22, 24, 22, 0, 365), *hand("54 22, 52 100")]],
}

# One picture a line; each draws from its own seed, [SEED, its index], so their order is part of the images.
SAMPLES = [
    Sample("0_pen_round.jpg"),
    Sample("0_marker_narrow.png", hand=1, size=(200, 260), pen=0.13, ink=BLACK_PEN, turn=-8, grain=3),
    Sample("0_pen_dim_light.jpg", size=(480, 360), height=0.5, light=0.6, grain=10, shadow=True, wobble=0.035),
    Sample("1_pen_plain.jpg", slant=0.25, light=0.35),
    Sample("1_pencil_flag.jpg", hand=1, ink=PENCIL, pen=0.035, paper=CREAM_PAPER, light=0.4),
    Sample("1_ink_transparent.png", size=(160, 200), slant=0.05, ink=BLACK_PEN, mode="RGBA"),
    Sample("1_printed.png", hand=-1, size=(160, 200), ink=BLACK_PEN, slant=0.0, light=0.15),
    Sample("2_pen_blue.jpg", slant=0.1, turn=4),
    Sample("2_chalk_board.jpg", hand=1, ink=CHALK, paper=BOARD, pen=0.09, chalky=True, light=0.3, grain=7),
    Sample("2_printed.png", hand=-1, size=(220, 220), ink=BLACK_PEN, slant=0.0, light=0.1),
    Sample("2_pen_dusty.jpg", ink=BLACK_PEN, pen=0.04, specks=400, grain=8, turn=-6),
    Sample("3_pen_red.jpg", ink=RED_PEN, wobble=0.03),
    Sample("3_pencil_faint.jpg", ink=(165, 165, 172), pen=0.04, light=0.5, grain=6),
    Sample("3_marker_small_in_frame.jpg", hand=1, size=(960, 720), height=0.14, centre=(0.62, 0.4), pen=0.1,
           ink=BLACK_PEN, light=0.35, specks=60),
    Sample("4_pen_open.jpg", hand=1, slant=0.05, light=0.3, shadow=True),
    Sample("4_felt_green.jpg", ink=GREEN_FELT, pen=0.1, paper=CREAM_PAPER, turn=6),
    Sample("4_printed.png", hand=-1, size=(200, 200), ink=RED_PEN, slant=0.1, paper=CREAM_PAPER),
    Sample("5_pen_detached_bar.jpg", hand=1, pen=0.05),
    Sample("5_felt_red_wide.jpg", size=(640, 360), height=0.7, centre=(0.35, 0.5), ink=RED_PEN, pen=0.1),
    Sample("5_printed_grey.png", hand=-1, size=(180, 240), ink=PENCIL, paper=GREY_PAPER, slant=0.1, mode="L"),
    Sample("6_pen_slanted.jpg", slant=0.3, wobble=0.03, shadow=True),
    Sample("6_pen_turned.jpg", hand=1, turn=15, slant=0.0, ink=BLACK_PEN),
    Sample("6_paint_on_screen.png", hand=1, size=(240, 240), ink=WHITE_PAINT, paper=SCREEN, pen=0.11, light=0.0,
           grain=2, specks=0, mode="P"),
    Sample("7_pen_plain.jpg", slant=0.05, turn=-5),
    Sample("7_pen_crossbar.jpg", hand=1, ink=BLACK_PEN, pen=0.045, light=0.45),
    Sample("7_chalk_board.jpg", ink=CHALK, paper=BOARD, pen=0.1, chalky=True, slant=0.1),
    Sample("7_printed.png", hand=-1, size=(180, 220), ink=BLUE_PEN, slant=0.15, light=0.3),
    Sample("8_pen_loop.jpg", pen=0.05, light=0.3),
    Sample("8_pencil_shadow.jpg", hand=1, ink=PENCIL, pen=0.05, shadow=True, light=0.4),
    Sample("8_marker_thumbnail.png", size=(40, 48), height=0.7, pen=0.12, ink=BLACK_PEN, specks=0, grain=3),
    Sample("9_pen_curved.jpg", slant=0.2),
    Sample("9_fine_pen_wide_frame.jpg", hand=1, size=(1000, 520), height=0.3, centre=(0.3, 0.55), pen=0.025,
           ink=BLACK_PEN, specks=40),
    Sample("9_printed.png", hand=-1, size=(200, 240), ink=BLUE_PEN, slant=0.0, turn=5),
    # Tight crops: the digit fills its picture and its strokes run along the edges, some cut by them.
    Sample("2_pen_tight_long_base.jpg", hand=2, size=(232, 360), height=0.97, slant=0.05, pen=0.07, light=0.2),
    Sample("2_pencil_tight_base_cut.jpg", hand=2, size=(216, 320), height=1.0, centre=(0.5, 0.48), ink=PENCIL,
           pen=0.06),
    Sample("2_marker_tight_curly_base.png", hand=1, size=(230, 300), height=0.96, ink=BLACK_PEN, pen=0.11, mode="L"),
    Sample("2_felt_tight_slanted.jpg", size=(284, 360), centre=(0.53, 0.5), height=0.98, slant=0.25, ink=GREEN_FELT,
           pen=0.09),
    Sample("7_pen_tight_bar.jpg", size=(220, 340), height=0.98, centre=(0.5, 0.52), ink=BLACK_PEN, pen=0.07),
    Sample("7_marker_tight_crossbar.jpg", hand=1, size=(240, 330), height=1.0, slant=0.1, pen=0.1, ink=RED_PEN),
    Sample("4_pen_tight_open.jpg", hand=1, size=(206, 340), centre=(0.47, 0.5), height=0.98, slant=0.0, pen=0.07),
    Sample("4_marker_tight_closed.png", size=(216, 320), centre=(0.54, 0.5), height=1.0, slant=0.05, pen=0.1,
           ink=BLACK_PEN),
    Sample("5_pen_tight_bar.jpg", size=(230, 340), height=0.98, centre=(0.5, 0.51), slant=0.1, pen=0.07),
    Sample("5_felt_tight_detached_bar.jpg", hand=1, size=(240, 330), height=1.0, ink=RED_PEN, pen=0.1),
]
# fmt: on


def smooth(points, steps=12):
    """A Catmull-Rom curve through `points` (a straight line for two points)."""
    points = np.asarray(points, float)
    padded = np.vstack([points[0], points, points[-1]])  # the ends doubled, so the curve runs through them
    p0, p1, p2, p3 = padded[:-3, None], padded[1:-2, None], padded[2:-1, None], padded[3:, None]  # around each piece
    t = np.linspace(0, 1, steps, endpoint=False)[:, None]
    curve = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
    return np.vstack([*curve, points[-1:]])


def draw_hand(strokes, sample, rng, box):
    """An 'L' mask of size (box, box) with the strokes brushed on: round nib, varying pressure, wobble."""
    canvas = Image.new("L", (box, box), 0)
    draw = ImageDraw.Draw(canvas)
    scale = 0.8 * box  # the 1-high template fills 80% of the box
    phases = rng.uniform(0, 2 * np.pi, 3)
    radius = sample.pen * scale / 2
    for stroke in strokes:
        x, y = smooth(stroke).T
        x = x + sample.wobble * np.sin(2 * np.pi * 1.3 * y + phases[0])
        y = y + sample.wobble * np.sin(2 * np.pi * 1.1 * x + phases[1])
        xy = np.column_stack([(x - 0.3) * scale + box / 2, (y - 0.5) * scale + box / 2])
        for start, stop in zip(xy, xy[1:], strict=False):
            count = max(1, int(np.hypot(*(stop - start)) / max(radius / 3, 0.5)))
            for share in np.linspace(0, 1, count, endpoint=False):
                cx, cy = start + share * (stop - start)
                pressure = radius * (1 + 0.25 * math.sin(cy / scale * 7 + phases[2]))
                draw.circle((cx, cy), pressure, fill=255)
    return canvas


def draw_print(digit, box):
    """An 'L' mask with the digit printed in Pillow's built-in font, filling about 80% of the box."""
    canvas = Image.new("L", (box, box), 0)
    font = ImageFont.load_default(size=int(0.8 * box * 1.35))  # cap height is ~0.72 of the font size
    ImageDraw.Draw(canvas).text((box / 2, box / 2), str(digit), fill=255, font=font, anchor="mm")
    return canvas


def ink_alpha(sample, rng):
    """How much ink covers each pixel of the picture, 0-1, (height, width)."""
    width, height = sample.size
    box = int(sample.height * height / 0.8) * SUPERSAMPLE  # the digit fills 80% of its box
    if sample.hand < 0:
        mask = draw_print(sample.digit, box)
    else:
        mask = draw_hand(HANDS[sample.digit][sample.hand], sample, rng, box)
    shear = (1, sample.slant, -sample.slant * box / 2, 0, 1, 0)
    mask = mask.transform(mask.size, Image.Transform.AFFINE, shear, Image.Resampling.BICUBIC)
    mask = mask.rotate(sample.turn, Image.Resampling.BICUBIC)
    mask = mask.resize((box // SUPERSAMPLE, box // SUPERSAMPLE), Image.Resampling.LANCZOS)
    x, y = sample.centre
    picture = Image.new("L", sample.size, 0)
    picture.paste(mask, (int(x * width - mask.width / 2), int(y * height - mask.width / 2)))  # cropped at the edges
    alpha = np.asarray(picture) / 255
    if sample.chalky:
        alpha *= np.clip(ndimage.gaussian_filter(rng.uniform(0.2, 1.6, alpha.shape), 0.8), 0, 1)
    return alpha


def lighting(sample, rng):
    """Brightness of the light on the sheet, 1 at its brightest: a gradient, a vignette, a shadow."""
    width, height = sample.size
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = x * np.cos(angle) + y * np.sin(angle)
    light = 1 - sample.light * (ramp - ramp.min()) / np.ptp(ramp)
    light *= 1 - 0.25 * ((x - x.mean()) ** 2 + (y - y.mean()) ** 2)
    if sample.shadow:  # a soft-edged band, as from a hand or a phone held over the page
        light *= 1 - 0.35 / (1 + np.exp(-(x - 0.3 - 0.4 * y) * 12))
    return light[..., None]


def render(sample, rng):
    """The picture as a uint8 (height, width, 3) array."""
    light = lighting(sample, rng)
    shape = (sample.size[1], sample.size[0], 1)
    grain = ndimage.gaussian_filter(rng.normal(0, sample.grain, shape), (0.7, 0.7, 0))
    alpha = ink_alpha(sample, rng)[..., None]
    picture = (np.asarray(sample.paper) * light + grain) * (1 - alpha) + np.asarray(sample.ink) * light * alpha
    rows, cols = np.ogrid[0 : shape[0], 0 : shape[1]]
    for _ in range(sample.specks):  # dust: small dark or light dots anywhere
        row, col, radius = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.uniform(0.6, 2.2)
        dot = ((rows - row) ** 2 + (cols - col) ** 2 <= radius**2)[..., None]
        picture = np.where(dot, 0.6 * picture + 0.4 * np.asarray(sample.ink), picture)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8)


def write(sample, picture, directory):
    """Save as JPEG or PNG; an RGBA sample keeps only the ink, in its alpha channel."""
    path = directory / sample.name
    image = Image.fromarray(picture)
    if sample.mode == "RGBA":
        ink = 255 - picture.min(axis=2).astype(float)
        alpha = np.clip((ink - np.median(ink)) * 3, 0, 255).astype(np.uint8)
        image = Image.new("RGB", image.size, sample.ink)
        image.putalpha(Image.fromarray(alpha))
    elif sample.mode != "RGB":
        image = image.convert(sample.mode)
    image.save(path, optimize=True, quality=85)  # the quality of the JPEGs; PNGs have none
    return path


def main():
    OUT_DIR.mkdir(exist_ok=True)
    for index, sample in enumerate(SAMPLES):
        rng = np.random.default_rng([SEED, index])
        path = write(sample, render(sample, rng), OUT_DIR)
        print(f"{path.relative_to(OUT_DIR.parent)}  ({path.stat().st_size // 1024} KB)")
    print(f"{len(SAMPLES)} images, digits {sorted({sample.digit for sample in SAMPLES})}")


if __name__ == "__main__":
    main()
