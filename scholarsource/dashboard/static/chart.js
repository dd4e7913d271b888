// A small live line chart in an inline SVG: the last `capacity` points, scaled to fit.
"use strict";

SS.lineChart = (svg, capacity) => {
  const NS = "http://www.w3.org/2000/svg";
  const [width, height] = [600, 160];
  const points = [];

  function shape(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  }

  function draw() {
    const peak = Math.max(0, ...points.map((p) => p.v));
    const top = Math.max(peak * 1.15, 0.1);
    // The window fills a minute's worth of points first, then grows up to `capacity`.
    const slots = Math.min(capacity, Math.max(60, points.length));
    const xy = points.map((p, i) => {
      const x = ((slots - points.length + i) / (slots - 1)) * width;
      const y = height - (p.v / top) * height;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const grid = [0.25, 0.5, 0.75].map((f) => shape("line", {
      x1: 0, x2: width, y1: height * f, y2: height * f, class: "grid-line",
      "vector-effect": "non-scaling-stroke",
    }));
    const drawn = [...grid];
    if (xy.length) {
      const first = xy[0].split(",")[0];
      const last = xy[xy.length - 1].split(",")[0];
      drawn.push(shape("polygon", {
        points: `${first},${height} ${xy.join(" ")} ${last},${height}`, class: "area",
      }));
      drawn.push(shape("polyline", {
        points: xy.join(" "), class: "line", "vector-effect": "non-scaling-stroke",
      }));
    }
    svg.replaceChildren(...drawn);
    // Read by the browser tests: how many points the chart holds.
    svg.setAttribute("data-points", String(points.length));
    return peak;
  }

  return {
    // Adds a point (t: unix seconds, v: value) and redraws; returns the highest value shown.
    push(t, v) {
      points.push({ t, v: Number.isFinite(v) ? v : 0 });
      if (points.length > capacity) points.shift();
      return draw();
    },
    get length() { return points.length; },
  };
};
