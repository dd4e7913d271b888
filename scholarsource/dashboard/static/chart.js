// A line chart in an inline SVG over a fixed time span, with its axes labelled in HTML next
// to it (the SVG stretches to its box, which would distort text drawn inside it).
"use strict";

SS.lineChart = (svg, axes) => {
  const NS = "http://www.w3.org/2000/svg";
  const [width, height] = [600, 160];

  function shape(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    return node;
  }

  return {
    // Draws `points` ({t: unix seconds, v: value}) between `from` and `to`; returns the
    // highest value shown.
    draw(points, from, to) {
      const peak = Math.max(0, ...points.map((p) => p.v));
      const top = Math.max(peak * 1.15, 0.1);
      const span = Math.max(to - from, 1);
      const xy = points.map((p) => {
        const x = ((p.t - from) / span) * width;
        const y = height - (p.v / top) * height;
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      const drawn = [0.5].map((f) => shape("line", {
        x1: 0, x2: width, y1: height * f, y2: height * f, class: "grid-line",
        "vector-effect": "non-scaling-stroke",
      }));
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
      // The y axis: the top of the scale and its middle (the grid line), then 0.
      axes.top.textContent = SS.rate(top);
      axes.middle.textContent = SS.rate(top / 2);
      // Read by the browser tests: how many points the chart holds, and their peak.
      svg.setAttribute("data-points", String(points.length));
      svg.setAttribute("data-peak", String(peak));
      return peak;
    },
  };
};
