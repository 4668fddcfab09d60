"""Processing: the Spark batch layer (time-range scans of HBase -> exact batch views)."""
