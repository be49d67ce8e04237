// The sharp side of bench/imaging.py; the same program as bench/imaging_side.py, for sharp.
//
//   node bench/sharp/run.mjs MODE CORPUS_FOLDER [--keep FOLDER] [--avif-effort N]
//
// identical: every encoder setting equal to blogimg's (mozjpeg JPEG q85 4:2:0, WebP q80 effort 4
// with smart subsampling, AVIF q50 4:2:0 at the given effort, a 300x300 attention-cropped WebP q75
// thumbnail, a 20-px WebP q40 LQIP and the dominant colour). production: sharp's defaults for
// blogimg's deliverables (a JPEG master, AVIF and WebP at 480/768/1024/1536 wide, the thumbnail,
// the LQIP, the colour). formats: each of the four identical deliverables alone. Prints one JSON line: seconds,
// images, bytes per format.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import sharp from "sharp";

sharp.concurrency(2); // libvips threads per pipeline: the same two blogimg gets

const argv = process.argv.slice(2);
const option = (name, fallback) => {
  const index = argv.indexOf(name);
  return index >= 0 ? argv[index + 1] : fallback;
};
const [mode, corpus] = argv;
const keep = option("--keep", null);
const avifEffort = Number(option("--avif-effort", "4"));
const widths = [480, 768, 1024, 1536];

async function identical(data) {
  const { width } = await sharp(data).metadata();
  const [jpeg, webp, avif, thumbnail, lqip, stats] = await Promise.all([
    sharp(data).jpeg({ quality: 85, mozjpeg: true, chromaSubsampling: "4:2:0" }).toBuffer(),
    sharp(data).webp({ quality: 80, effort: 4, smartSubsample: true }).toBuffer(),
    sharp(data).avif({ quality: 50, effort: avifEffort, chromaSubsampling: "4:2:0" }).toBuffer(),
    sharp(data).resize(300, 300, { fit: "cover", position: "attention" })
      .webp({ quality: 75, effort: 4, smartSubsample: true }).toBuffer(),
    sharp(data).resize(20).webp({ quality: 40, effort: 4 }).toBuffer(),
    sharp(data).stats(),
  ]);
  void stats.dominant;
  return [
    [`master-${width}.jpeg`, "jpeg", jpeg],
    [`variant-${width}.webp`, "webp", webp],
    [`variant-${width}.avif`, "avif", avif],
    ["thumbnail-300.webp", "webp", thumbnail],
    ["lqip", "webp", Buffer.from(`data:image/webp;base64,${lqip.toString("base64")}`)],
  ];
}

async function production(data) {
  const { width } = await sharp(data).metadata();
  const sizes = [...new Set([...widths.filter((w) => w < width), width])].sort((a, b) => a - b);
  const jobs = [sharp(data).jpeg().toBuffer().then((b) => [`master-${width}.jpeg`, "jpeg", b])];
  for (const size of sizes) {
    const resized = () => (size === width ? sharp(data) : sharp(data).resize(size));
    jobs.push(resized().avif().toBuffer().then((b) => [`variant-${size}.avif`, "avif", b]));
    jobs.push(resized().webp().toBuffer().then((b) => [`variant-${size}.webp`, "webp", b]));
  }
  jobs.push(sharp(data).resize(300, 300, { position: "attention" }).webp().toBuffer()
    .then((b) => ["thumbnail-300.webp", "webp", b]));
  jobs.push(sharp(data).resize(20).webp().toBuffer()
    .then((b) => ["lqip", "webp", Buffer.from(`data:image/webp;base64,${b.toString("base64")}`)]));
  jobs.push(sharp(data).stats().then(() => null));
  return (await Promise.all(jobs)).filter(Boolean);
}

// One deliverable alone, as in bench/imaging_side.py's format modes.
const single = {
  jpeg: (data) => sharp(data).jpeg({ quality: 85, mozjpeg: true, chromaSubsampling: "4:2:0" }),
  webp: (data) => sharp(data).webp({ quality: 80, effort: 4, smartSubsample: true }),
  avif: (data) => sharp(data).avif({ quality: 50, effort: avifEffort, chromaSubsampling: "4:2:0" }),
  thumbnail: (data) => sharp(data).resize(300, 300, { fit: "cover", position: "attention" })
    .webp({ quality: 75, effort: 4, smartSubsample: true }),
};

const oneFormat = (format) => async (data) => {
  const { data: output, info } = await single[format](data).toBuffer({ resolveWithObject: true });
  const encoded = info.format === "heif" ? "avif" : info.format; // sharp names AVIF output "heif"
  return [[`${format}-${info.width}.${encoded}`, encoded, output]];
};

const manifest = JSON.parse(readFileSync(path.join(corpus, "manifest.json"), "utf8"));
const sources = manifest.map((name) => [name, readFileSync(path.join(corpus, name))]);
const warmup = readFileSync(path.join(corpus, "warmup.png"));
const jobs = mode === "identical" ? [["identical", identical]] : mode === "production"
  ? [["production", production]] : Object.keys(single).map((name) => [name, oneFormat(name)]);
const results = [];
const byFormat = {};
for (const [name, job] of jobs) {
  await job(warmup); // libraries loaded before timing, as on the Python side
  const started = process.hrtime.bigint();
  for (const [file, data] of sources) results.push([file, await job(data)]);
  byFormat[name] = Number(process.hrtime.bigint() - started) / 1e9;
}
const seconds = Object.values(byFormat).reduce((a, b) => a + b, 0);

const totals = {};
const files = {};
for (const [name, outputs] of results) {
  for (const [label, format, data] of outputs) {
    const key = label === "lqip" ? "lqip" : format;
    totals[key] = (totals[key] ?? 0) + data.length;
    (files[key] ??= []).push(`${name}/${label}/${createHash("sha256").update(data).digest("hex")}`);
  }
}
// The same per-format digest as bench/imaging_side.py: equal digests mean byte-identical files.
const sortedText = (entries) => [...entries].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).join("\n");
const digests = Object.fromEntries(Object.entries(files)
  .map(([key, entries]) => [key, createHash("sha256").update(sortedText(entries)).digest("hex")]));
if (keep) {
  for (const [name, outputs] of results) {
    const folder = path.join(keep, path.parse(name).name);
    mkdirSync(folder, { recursive: true });
    for (const [label, , data] of outputs) writeFileSync(path.join(folder, label), data);
  }
}
// This process's own peak RSS since exec (VmHWM, KiB): getrusage's maxRSS starts from the parent's.
const peakRssKb = (() => {
  try {
    const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
    return line ? Number(line.split(/\s+/)[1]) : 0;
  } catch {
    return 0;
  }
})();
process.stdout.write(`${JSON.stringify({ seconds, images: sources.length, bytes: totals, by_format: byFormat, digests,
  peak_rss_kb: peakRssKb })}\n`);
