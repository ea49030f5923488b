"""A self-checking Verilog testbench of the whole accelerator, for any simulator.

``tb_intvit_accelerator.v`` reads ``pixels.hex`` (one int8 pixel per line, image after image,
raster order) and ``logits.hex`` (``classes`` int16 logits per image, from
``IntegerViT.forward``), streams each image in, checks its logits, and prints per image ``image
N: C cycles`` (first pixel accepted to last logits beat, both counted) and at the end
``N images, M mismatches``; ``$fatal`` on a mismatch or when an image takes longer than its
bound (plusargs ``+images=N +bound=C``). One process on the rising edge, as the unit testbenches (``intvit.fpga.hextb``), so the
handshakes seen here are the ones the accelerator saw.
"""
from pathlib import Path

import numpy as np

from intvit.golden_model.qvit import IMAGE_BITS, LOGIT_BITS

MODULE = "intvit_accelerator"


def write_hex(directory: Path, pixels: np.ndarray, logits: np.ndarray) -> None:
    """``pixels.hex`` and ``logits.hex`` of ``pixels`` ``(B, P)`` and ``logits`` ``(B, K)``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pixels.hex").write_text(
        "".join(f"{int(p) & 0xFF:02x}\n" for p in np.asarray(pixels).reshape(-1)))
    (directory / "logits.hex").write_text(
        "".join(f"{int(v) & 0xFFFF:04x}\n" for v in np.asarray(logits).reshape(-1)))


PIXEL_MEMORY = 1 << 20
"""Pixels the testbench's memory holds at least (a megabyte): every run of a small model's
images, of any length up to that, shares one build."""


def capacity(images: int, pixels: int) -> int:
    """Images the testbench's memories hold: a power of two, ``images`` or more, and as many as
    :data:`PIXEL_MEMORY` pixels allow."""
    return 1 << (max(images, PIXEL_MEMORY // pixels, 1) - 1).bit_length()


def testbench(lanes: int, images: int, pixels: int, classes: int, addr_bits: int,
              data_bits: int, step_bits: int) -> str:
    """The testbench source for up to :func:`capacity` ``(images, pixels)`` images of ``pixels``
    pixels and ``classes`` logits; plusargs ``+images=N`` (the images in the hex files) and
    ``+bound=C`` (cycles an image may take before it counts as stalled)."""
    beats = -(-classes // lanes)
    return f"""\
// Self-checking testbench of {MODULE}, written by intvit (sim/accelerator_tb.py).
// Reads pixels.hex and logits.hex from the working directory; prints one line per image and
// "N images, M mismatches"; $fatal(1) on a mismatch or a stall.
module tb_{MODULE};
    localparam LANES = {lanes};
    localparam CAPACITY = {capacity(images, pixels)};
    localparam PIXELS = {pixels};
    localparam CLASSES = {classes};
    localparam BEATS = {beats};

    reg [{IMAGE_BITS - 1}:0] pixel_mem [0:CAPACITY*PIXELS-1];
    reg [{LOGIT_BITS - 1}:0] logit_mem [0:CAPACITY*CLASSES-1];

    reg clk = 1'b0;
    reg rst = 1'b1;
    reg [{IMAGE_BITS - 1}:0] pixels_payload = 0;
    reg pixels_valid = 1'b0;
    wire pixels_ready;
    wire [LANES*{LOGIT_BITS}:0] logits_payload;
    wire logits_valid;
    reg logits_ready = 1'b1;
    wire [{step_bits - 1}:0] step;
    wire tap_en;
    wire [{addr_bits - 1}:0] tap_addr;
    wire [{data_bits - 1}:0] tap_data;
    wire [LANES-1:0] tap_mask;

    {MODULE} dut (
        .clk(clk), .rst(rst),
        .pixels_payload(pixels_payload), .pixels_valid(pixels_valid),
        .pixels_ready(pixels_ready),
        .logits_payload(logits_payload), .logits_valid(logits_valid),
        .logits_ready(logits_ready),
        .step(step), .tap_en(tap_en), .tap_addr(tap_addr), .tap_data(tap_data),
        .tap_mask(tap_mask)
    );

    always #5 clk = ~clk;

    integer reset_edges, image, sent, beat, lane, mismatches, bad, cycle, start, total;
    integer IMAGES, BOUND;

    initial begin
        reset_edges = 0; image = 0; sent = 0; beat = 0; mismatches = 0; cycle = 0;
        start = -1; total = 0;
        if (!$value$plusargs("images=%d", IMAGES)) IMAGES = 1;
        if (!$value$plusargs("bound=%d", BOUND)) BOUND = 1000000000;
        $readmemh("pixels.hex", pixel_mem);
        $readmemh("logits.hex", logit_mem);
    end

    always @(posedge clk) begin
        if (rst) begin
            reset_edges = reset_edges + 1;
            if (reset_edges == 2)
                rst <= 1'b0;
        end else begin
            cycle = cycle + 1;
            if (pixels_valid && pixels_ready) begin
                if (sent == 0)
                    start = cycle;
                sent = sent + 1;
            end
            pixels_valid <= sent < PIXELS;
            if (sent < PIXELS)
                pixels_payload <= pixel_mem[image * PIXELS + sent];
            if (logits_valid && logits_ready) begin
                bad = 0;
                for (lane = 0; lane < LANES; lane = lane + 1)
                    if (beat * LANES + lane < CLASSES
                        && logits_payload[lane*{LOGIT_BITS} +: {LOGIT_BITS}]
                           !== logit_mem[image * CLASSES + beat * LANES + lane])
                        bad = 1;
                if (bad) begin
                    if (mismatches == 0)
                        $display("MISMATCH image %0d beat %0d: got %h", image, beat,
                                 logits_payload);
                end
                beat = beat + 1;
                if (beat == BEATS) begin
                    mismatches = mismatches + bad;
                    $display("image %0d: %0d cycles", image, cycle - start + 1);
                    total = total + cycle - start + 1;
                    image = image + 1;
                    sent = 0;
                    beat = 0;
                    pixels_valid <= 1'b0;
                    if (image == IMAGES) begin
                        $display("%0d images, %0d mismatches, %0d cycles", IMAGES, mismatches,
                                 total);
                        if (mismatches != 0)
                            $fatal(1, "logits differ from the golden model");
                        $finish;
                    end
                end
            end
            if (start >= 0 && cycle - start > BOUND) begin
                $display("%0d images, %0d mismatches", image, mismatches + 1);
                $fatal(1, "STALL: image %0d has no logits after %0d cycles, in step %0d",
                       image, BOUND, step);
            end
        end
    end
endmodule
"""
