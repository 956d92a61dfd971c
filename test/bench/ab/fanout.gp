# Presence fan-out latency (join -> the LAST member's presence:joined) against
# room size, collab vs. the Node socket.io + Redis baseline; called by run.sh
# with datafile and outfile set.
set terminal pngcairo size 900,560 font "DejaVu Sans,11"
set output outfile
set title "Presence fan-out: join → last member's presence:joined"
set xlabel "clients in the room"
set ylabel "latency, ms"
set logscale x
set logscale y
set grid xtics ytics mxtics mytics
set key top left
set xtics (10, 100, 500, 1000)
set xrange [7:1400]
plot datafile using 1:3 with linespoints lw 2 pt 7 lc rgb "#c0392b" title "collab p99", \
     datafile using 1:2 with linespoints lw 2 pt 5 lc rgb "#e67e22" title "collab p50", \
     datafile using 1:5 with linespoints lw 2 pt 7 dt 2 lc rgb "#2c3e50" title "baseline p99", \
     datafile using 1:4 with linespoints lw 2 pt 5 dt 2 lc rgb "#2980b9" title "baseline p50"
