<?php
/**
 * The settings: the REST settings group the app fills after a wc-auth connect, the page.
 *
 * @package Stammkunde
 */

// phpcs:disable

use PHPUnit\Framework\TestCase;

final class SettingsTest extends TestCase {

	protected function setUp(): void {
		SK::reset();
	}

	public function test_rest_settings_group_names_the_three_options() {
		Stammkunde_Plugin::instance()->register();

		$groups   = apply_filters( 'woocommerce_settings_groups', array() );
		$settings = apply_filters( 'woocommerce_settings-stammkunde', array() );

		$this->assertSame( 'stammkunde', $groups[0]['id'] );
		$this->assertSame(
			array( 'stammkunde_app_url' => 'text', 'stammkunde_shop_id' => 'text', 'stammkunde_secret' => 'password' ),
			array_column( $settings, 'type', 'option_key' )
		);
		$this->assertSame( array_column( $settings, 'id' ), array_column( $settings, 'option_key' ) );
	}

	public function test_app_address_must_be_https_and_a_bad_one_keeps_the_old_value() {
		SK::configure();

		$this->assertSame( 'https://neu.example', Stammkunde_Settings::sanitize_app_url( ' https://neu.example/ ' ) );
		$this->assertSame( 'http://127.0.0.1:5000', Stammkunde_Settings::sanitize_app_url( 'http://127.0.0.1:5000' ) );
		$this->assertSame( 'https://loyalty.example', Stammkunde_Settings::sanitize_app_url( 'http://loyalty.example' ) );
		$this->assertSame( 'settings-error', SK::$notices[0]['type'] );
		$this->assertSame( '7', Stammkunde_Settings::sanitize_shop_id( 'sieben' ) );
		$this->assertSame( 'test-secret-0123456789', Stammkunde_Settings::sanitize_secret( '' ) );
	}

	public function test_page_says_whether_the_app_accepts_the_secret() {
		SK::$user_id = 1;
		SK::configure();
		SK::app( array( '/api/woocommerce/v1/ping' => array( 200, array( 'shop' => 7 ) ) ) );

		ob_start();
		( new Stammkunde_Settings() )->render_page();
		$connected = ob_get_clean();
		SK::app( array( '/api/woocommerce/v1/ping' => array( 401, array( 'error' => 'bad_signature' ) ) ) );
		Stammkunde_Plugin::set_instance( null );
		ob_start();
		( new Stammkunde_Settings() )->render_page();
		$refused = ob_get_clean();

		$this->assertStringContainsString( 'Connected: the app answers for shop 7.', $connected );
		$this->assertStringContainsString( 'href="https://loyalty.example/woocommerce/connect?store=https://laden.example/"', $connected );
		$this->assertStringNotContainsString( 'test-secret', $connected );
		$this->assertStringContainsString( 'The app cannot be reached or refuses the secret.', $refused );
	}
}
