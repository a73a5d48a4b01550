<?php
/**
 * Deleting the plugin removes its settings (the points stay in the app).
 *
 * @package Stammkunde
 */

defined( 'WP_UNINSTALL_PLUGIN' ) || exit;

foreach ( array( 'stammkunde_app_url', 'stammkunde_shop_id', 'stammkunde_secret', 'stammkunde_app_paused' ) as $stammkunde_option ) {
	delete_option( $stammkunde_option );
}
