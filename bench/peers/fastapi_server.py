"""The usual Python design the bench compares pixfork with: FastAPI on
uvicorn (one event loop) handing Pillow work to a ProcessPoolExecutor of
WORKERS processes. Routes mirror the bench's pixfork requests:

  POST /v1/resize?width=W&quality=Q   JPEG in: Lanczos, JPEG out;
                                      GIF in: every frame, animated GIF out
  POST /v1/blur?sigma=S&quality=Q     Gaussian blur, JPEG out
  GET  /healthz

Usage: python3 fastapi_server.py PORT WORKERS
"""
import asyncio
import io
import sys
from concurrent.futures import ProcessPoolExecutor

from fastapi import FastAPI, Request, Response
from PIL import Image, ImageFilter, ImageSequence

app = FastAPI()
pool = None


def work(op, params, body):
    im = Image.open(io.BytesIO(body))
    quality = int(params.get("quality", 80))
    if op == "resize" and im.format == "GIF":
        width = int(params["width"])
        frames, durations = [], []
        for frame in ImageSequence.Iterator(im):
            f = frame.convert("RGBA")
            h = max(1, round(f.height * width / f.width))
            frames.append(f.resize((width, h), Image.LANCZOS))
            durations.append(frame.info.get("duration", 100))
        out = io.BytesIO()
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=im.info.get("loop", 0), disposal=2)
        return out.getvalue(), "image/gif"
    im = im.convert("RGB")
    if op == "resize":
        width = int(params["width"])
        if width < im.width:
            im = im.resize((width, max(1, round(im.height * width / im.width))), Image.LANCZOS)
    elif op == "blur":
        im = im.filter(ImageFilter.GaussianBlur(float(params["sigma"])))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.getvalue(), "image/jpeg"


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/v1/{op}")
async def run(op: str, request: Request):
    body = await request.body()
    params = dict(request.query_params)
    data, kind = await asyncio.get_running_loop().run_in_executor(pool, work, op, params, body)
    return Response(content=data, media_type=kind)


if __name__ == "__main__":
    import uvicorn

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    pool = ProcessPoolExecutor(workers)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
