// rgb-assets map viewer: AOI outlines, a month slider over the composites, the visual
// composite as tiles from /cog, pixel values on click and a swipe compare of two months.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(window.location.search);
  const map = L.map("map", { maxZoom: 20 });
  map.createPane("compare").style.zIndex = 450;
  const state = { bounds: {}, layers: null, aoi: null, months: [], base: null, other: null, outlines: null };
  window.rgbViewer = state; // for tests and the console

  const pct = (x) => `${(100 * x).toFixed(1)} %`;
  const tiles = (c, pane) =>
    L.tileLayer(c.tiles, {
      maxZoom: 20,
      pane: pane || "tilePane",
      bounds: state.bounds[c.aoi],
      attribution: "rgb-assets composites",
    });

  function monthsOf(aoi) {
    return state.layers.composites.filter((c) => c.aoi === aoi);
  }

  function current() {
    return state.months[Number($("slider").value)];
  }

  function showMonth() {
    const c = current();
    if ($("compare").checked) showCompare();
    if (!c) { $("month-facts").textContent = "No composite for this AOI yet."; return; }
    if (state.base) map.removeLayer(state.base);
    state.base = tiles(c).addTo(map);
    document.body.dataset.month = c.month;
    $("month-facts").innerHTML =
      `<b>${c.month}</b>: clear ${pct(c.clear_fraction)}, ${c.scene_count} scene(s)` +
      ` · <a href="${c.cog}">COG</a> · <a href="${c.thumbnail}">thumbnail</a>` +
      (c.item ? ` · <a href="${c.item}">STAC item</a>` : "");
    const u = new URL(window.location);
    u.searchParams.set("aoi", c.aoi);
    u.searchParams.set("month", c.month);
    window.history.replaceState(null, "", u);
  }

  function clip() {
    if (!state.other) return;
    const size = map.getSize();
    const nw = map.containerPointToLayerPoint([0, 0]);
    const se = map.containerPointToLayerPoint(size);
    const x = nw.x + (size.x * Number($("swipe").value)) / 100;
    map.getPane("compare").style.clip = `rect(${nw.y}px, ${se.x}px, ${se.y}px, ${x}px)`;
    let line = $("swipe-line");
    if (!line) {
      line = document.createElement("div");
      line.id = "swipe-line";
      map.getContainer().appendChild(line);
    }
    line.style.left = `${(size.x * Number($("swipe").value)) / 100}px`;
  }

  function showCompare() {
    if (state.other) { map.removeLayer(state.other); state.other = null; }
    const on = $("compare").checked;
    $("compare-month").disabled = !on;
    $("swipe-row").hidden = !on;
    const line = $("swipe-line");
    if (line) line.hidden = !on;
    if (!on) return;
    const sel = $("compare-month");
    if (sel.value === $("slider").value && state.months.length > 1) {
      // Comparing a month with itself shows nothing: take its neighbour.
      sel.value = String(Number(sel.value) > 0 ? Number(sel.value) - 1 : 1);
    }
    const c = state.months[Number(sel.value)];
    if (!c) return;
    state.other = tiles(c, "compare").addTo(map);
    document.body.dataset.compareMonth = c.month;
    $("swipe-label").textContent = `left ${current().month} | right ${c.month}`;
    clip();
  }

  function selectAoi(name, month) {
    state.aoi = name;
    state.months = monthsOf(name);
    const slider = $("slider");
    slider.max = String(Math.max(0, state.months.length - 1));
    const i = state.months.findIndex((c) => c.month === month);
    slider.value = String(i >= 0 ? i : state.months.length - 1);
    $("compare-month").innerHTML = state.months
      .map((c, j) => `<option value="${j}">${c.month} (clear ${pct(c.clear_fraction)})</option>`)
      .join("");
    $("compare-month").value = String(Math.max(0, Number(slider.value) - 1));
    state.outlines.eachLayer((l) => {
      if (l.feature.properties.name === name) map.fitBounds(l.getBounds(), { padding: [20, 20] });
    });
    showMonth();
    showCompare();
  }

  async function pixel(e) {
    const c = current();
    if (!c) return;
    const { lat, lng } = e.latlng;
    const q = new URLSearchParams({ aoi: c.aoi, month: c.month, asset: "data" });
    const r = await fetch(`/cog/point/${lng},${lat}?${q}`);
    if (!r.ok) { $("pixel").textContent = `outside the composite (${r.status})`; return; }
    const body = await r.json();
    const names = c.bands; // the analysis COG's band order: reflectance bands, clear count
    const rows = body.values.map((v, i) => {
      const shown = v === null ? "no data" : names[i] === "clear_count" ? v : v.toFixed(4);
      return `<tr><td>${names[i]}</td><td>${shown}</td></tr>`;
    });
    $("pixel").innerHTML =
      `<b>${c.month}</b> at ${lat.toFixed(5)}, ${lng.toFixed(5)}<table>${rows.join("")}</table>`;
    document.body.dataset.pixel = JSON.stringify(body.values);
  }

  async function main() {
    const r = await fetch("/map/layers");
    state.layers = await r.json();
    state.outlines = L.geoJSON(state.layers.aois, {
      style: { color: "#ffcc00", weight: 2, fill: false },
      onEachFeature: (f, l) => {
        l.bindTooltip(f.properties.name);
        state.bounds[f.properties.name] = l.getBounds().pad(0.05);
      },
    }).addTo(map);
    const names = state.layers.aois.features.map((f) => f.properties.name);
    $("aoi").innerHTML = names.map((n) => `<option>${n}</option>`).join("");
    if (!names.length) {
      map.setView([0, 0], 2);
      $("status").textContent = "No AOI registered yet.";
      return;
    }
    const withData = names.find((n) => monthsOf(n).length) || names[0];
    const aoi = names.includes(params.get("aoi")) ? params.get("aoi") : withData;
    $("aoi").value = aoi;
    selectAoi(aoi, params.get("month"));
    $("aoi").addEventListener("change", () => selectAoi($("aoi").value, null));
    $("slider").addEventListener("input", showMonth);
    $("compare").addEventListener("change", showCompare);
    $("compare-month").addEventListener("change", showCompare);
    $("swipe").addEventListener("input", clip);
    map.on("move zoom resize", clip);
    map.on("click", pixel);
    document.body.dataset.ready = "1";
  }

  main().catch((err) => { $("status").textContent = `Error: ${err}`; });
})();
